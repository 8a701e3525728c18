"""Admin actions for server owners: each one changes what members get, and leaves a trace."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import discord as discord_api
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import admin, banned_words, quotas, server_models
from bot.services.admin import AdminError
from bot.services.errors import RefusalReason, Refused
from core.models import ModelCatalog, builtin_entries
from core.models_file import parse_catalog
from core.moderation import GuildWordList, ModerationError, check_prompt
from core.spec import Lane
from db import repositories as repo
from db.models import CreditLedger, Guild, LedgerKind, ModerationEvent, NsfwPolicy
from tests.bot.conftest import next_id
from tests.bot.discord_harness import Harness, running_bot


def two_model_catalog(folder: Path) -> ModelCatalog:
    """The built-in ``tiny`` plus ``turbo`` (a hub id: nothing is read or downloaded here)."""
    lora = folder / "pixel-art.safetensors"
    lora.write_bytes(b"")
    raw = {
        "models": {
            "turbo": {
                "family": "sdxl-turbo",
                "hub": "stabilityai/sdxl-turbo",
                "loras": [{"name": "pixel-art", "path": str(lora)}],
            }
        }
    }
    tiny = [e for e in builtin_entries(folder) if e.name == "tiny"]
    return parse_catalog(raw, base_dir=folder, builtins=tiny)


@pytest.fixture
def catalog2(tmp_path: Path) -> ModelCatalog:
    return two_model_catalog(tmp_path)


@pytest.fixture
def guild_id() -> int:
    """A server's Discord id."""
    return next_id()


ADMIN = 4242


class Acting(TypedDict):
    """Who acts where: the arguments every admin action starts with."""

    session: AsyncSession
    guild_discord_id: int
    admin_discord_id: int


class ActingOnModels(Acting):
    catalog: ModelCatalog


class ActingOnMember(Acting):
    user_discord_id: int


async def _events(session: AsyncSession, guild_discord_id: int) -> list[ModerationEvent]:
    guild = await repo.upsert_guild(session=session, discord_id=guild_discord_id)
    rows = await session.scalars(
        select(ModerationEvent).where(ModerationEvent.guild_id == guild.id).order_by(ModerationEvent.id)
    )
    return list(rows)


async def _guild_row(session: AsyncSession, guild_discord_id: int) -> Guild:
    guild = await repo.upsert_guild(session=session, discord_id=guild_discord_id)
    await session.refresh(guild)
    return guild


# --------------------------------------------------------------------------- credits


async def test_a_grant_adds_to_the_balance_and_is_logged_with_the_admin(
    session: AsyncSession, guild_id: int
) -> None:
    member = next_id()

    outcome = await admin.grant(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, user_discord_id=member, amount=25
    )

    assert (outcome.granted, outcome.balance) == (True, 25)
    user = await repo.upsert_user(session=session, discord_id=member)
    [row] = await session.scalars(select(CreditLedger).where(CreditLedger.user_id == user.id))
    assert (row.kind, row.amount) == (LedgerKind.GRANT, 25)
    [event] = await _events(session, guild_id)
    assert event.kind == "admin_grant" and event.user_id == user.id
    assert event.detail == {"admin": ADMIN, "amount": 25, "user": member}


async def test_a_retried_grant_command_pays_once(session: AsyncSession, guild_id: int) -> None:
    member = next_id()
    for _ in range(2):
        outcome = await admin.grant(
            session=session,
            guild_discord_id=guild_id,
            admin_discord_id=ADMIN,
            user_discord_id=member,
            amount=10,
            key="admin-grant:1234",
        )
    assert (outcome.granted, outcome.balance) == (False, 10)


@pytest.mark.parametrize("amount", [0, -5, admin.MAX_GRANT + 1])
async def test_a_grant_out_of_range_is_refused(session: AsyncSession, guild_id: int, amount: int) -> None:
    with pytest.raises(AdminError, match="Grant between 1 and 1,000,000 credits"):
        await admin.grant(
            session=session,
            guild_discord_id=guild_id,
            admin_discord_id=ADMIN,
            user_discord_id=next_id(),
            amount=amount,
        )


# --------------------------------------------------------------------------- bans


async def test_a_banned_member_is_refused_until_unbanned(session: AsyncSession, guild_id: int) -> None:
    member = next_id()
    assert await admin.ban_user(
        session=session,
        guild_discord_id=guild_id,
        admin_discord_id=ADMIN,
        user_discord_id=member,
        reason="spam",
    )
    guild = await _guild_row(session, guild_id)
    user = await repo.upsert_user(session=session, discord_id=member)

    with pytest.raises(
        Refused, match=re.escape("banned you from making images here. Reason: spam")
    ) as refused:
        await quotas.admit(session=session, user_id=user.id, guild_id=guild.id)
    assert refused.value.reason is RefusalReason.BANNED_USER
    assert await admin.banned_users(session=session, guild_discord_id=guild_id) == [(member, "spam")]

    assert await admin.unban_user(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, user_discord_id=member
    )
    await quotas.admit(session=session, user_id=user.id, guild_id=guild.id)
    assert [e.kind for e in await _events(session, guild_id)] == ["admin_ban", "admin_unban"]


async def test_banning_twice_updates_the_reason_and_unbanning_a_stranger_changes_nothing(
    session: AsyncSession, guild_id: int
) -> None:
    member = next_id()
    kwargs = ActingOnMember(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, user_discord_id=member
    )
    assert await admin.ban_user(**kwargs, reason="spam")
    assert not await admin.ban_user(**kwargs, reason="still spam")
    assert await admin.banned_users(session=session, guild_discord_id=guild_id) == [(member, "still spam")]
    assert not await admin.unban_user(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, user_discord_id=next_id()
    )


async def test_an_admin_cannot_ban_themselves(session: AsyncSession, guild_id: int) -> None:
    with pytest.raises(AdminError, match="cannot ban yourself"):
        await admin.ban_user(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, user_discord_id=ADMIN
        )


# --------------------------------------------------------------------------- banned words


async def test_a_banned_word_then_refuses_prompts_with_it(session: AsyncSession, guild_id: int) -> None:
    change = await banned_words.add_banned_word(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry=" Dragon "
    )
    assert change.changed and change.entries == ("Dragon",)

    banned = GuildWordList((await admin.get_policy(session=session, guild_discord_id=guild_id)).banned_words)
    with pytest.raises(ModerationError, match="does not allow the word or pattern `dragon`"):
        check_prompt("a red DRAGON over the hills", banned=banned)
    check_prompt("a dragonfly over the pond", banned=banned)  # whole words only
    assert [e.detail for e in await _events(session, guild_id)] == [{"admin": ADMIN, "entry": "Dragon"}]


async def test_an_invalid_pattern_is_refused_with_the_regex_error(
    session: AsyncSession, guild_id: int
) -> None:
    with pytest.raises(AdminError) as refused:
        await banned_words.add_banned_word(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry="re:(ab"
        )
    assert (
        refused.value.message
        == "`(ab` is not a valid regular expression: missing ), unterminated subpattern at position 0."
    )
    with pytest.raises(AdminError, match="would refuse every prompt"):
        await banned_words.add_banned_word(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry="re:x*"
        )
    with pytest.raises(AdminError, match="takes too long to check"):
        await banned_words.add_banned_word(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry="re:(a|aa)+$"
        )
    assert (await admin.get_policy(session=session, guild_discord_id=guild_id)).banned_words == ()
    assert await _events(session, guild_id) == []


async def test_a_pattern_is_kept_as_typed_and_works(session: AsyncSession, guild_id: int) -> None:
    await banned_words.add_banned_word(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry=r"re:\bgor(e|y)\b"
    )
    banned = GuildWordList((await admin.get_policy(session=session, guild_discord_id=guild_id)).banned_words)
    with pytest.raises(ModerationError):
        check_prompt("a gory battle", banned=banned)


async def test_duplicates_are_not_added_and_removing_takes_it_off(
    session: AsyncSession, guild_id: int
) -> None:
    for entry in ("café", "CAFE"):
        change = await banned_words.add_banned_word(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry=entry
        )
    assert not change.changed and change.entries == ("café",)

    removed = await banned_words.remove_banned_word(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry="Cafe"
    )
    assert removed.entries == ()
    with pytest.raises(AdminError, match="`cafe` is not on this server's banned list"):
        await banned_words.remove_banned_word(
            session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, entry="cafe"
        )


# --------------------------------------------------------------------------- models


async def test_disallowing_a_model_keeps_the_others_and_refuses_it(
    session: AsyncSession, guild_id: int, catalog2: ModelCatalog
) -> None:
    policy = await server_models.disallow_model(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, name="TURBO", catalog=catalog2
    )

    assert policy.allowed_models == ("tiny",)
    assert server_models.validate_model("tiny", policy, catalog=catalog2).name == "tiny"
    with pytest.raises(Refused) as refused:
        server_models.validate_model("turbo", policy, catalog=catalog2)
    assert (
        refused.value.message
        == "The model `turbo` is not allowed on this server. Models you can use: `tiny`."
    )
    assert refused.value.reason is RefusalReason.MODEL


async def test_the_last_allowed_model_stays_and_unknown_names_are_refused(
    session: AsyncSession, guild_id: int, catalog2: ModelCatalog
) -> None:
    common = ActingOnModels(
        session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN, catalog=catalog2
    )
    await server_models.disallow_model(**common, name="turbo")
    with pytest.raises(AdminError, match="`tiny` is the only model allowed here"):
        await server_models.disallow_model(**common, name="tiny")
    with pytest.raises(
        AdminError, match=re.escape("There is no model `sdxl-base`. Models: `tiny`, `turbo`.")
    ):
        await server_models.allow_model(**common, name="sdxl-base")

    policy = await server_models.allow_model(**common, name="turbo")
    assert policy.allowed_models == ("tiny", "turbo")
    policy = await server_models.allow_all_models(session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN)
    assert policy.allowed_models == ()
    assert server_models.allowed_model_names(catalog2, policy) == ["tiny", "turbo"]


def test_validate_model_and_lora_without_a_server(catalog2: ModelCatalog) -> None:
    assert server_models.validate_model(None, None, catalog=catalog2).name == "turbo"  # the file's first model
    with pytest.raises(
        Refused, match=re.escape("The model `nope` is not available. Models you can use: `tiny`, `turbo`.")
    ):
        server_models.validate_model("nope", None, catalog=catalog2)
    turbo = catalog2.get("turbo")
    assert server_models.validate_lora("Pixel-Art", turbo).name == "pixel-art"
    with pytest.raises(
        Refused, match=re.escape("The model `tiny` has no LoRA `pixel-art`, and you have no trained LoRA of that "
                                 "name here. Its LoRAs: none")
    ):
        server_models.validate_lora("pixel-art", catalog2.get("tiny"))


# --------------------------------------------------------------------------- policy switches


async def test_caps_and_role_quotas_reach_the_members(session: AsyncSession, guild_id: int) -> None:
    vip = next_id()
    common = Acting(session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN)
    await admin.set_caps(**common, max_running=2, max_queued=4)
    policy = await admin.set_role_quota(**common, role_id=vip, max_running=None, max_queued=40)

    assert policy.role_quotas == (admin.RoleQuota(role_id=vip, max_running=None, max_queued=40),)
    guild = await _guild_row(session, guild_id)
    assert quotas.caps_for(guild, [vip]) == quotas.Caps(max_running=2, max_queued=40)
    assert quotas.caps_for(guild, []) == quotas.Caps(max_running=2, max_queued=4)

    await admin.clear_role_quota(**common, role_id=vip)
    assert quotas.caps_for(await _guild_row(session, guild_id), [vip]) == quotas.Caps(2, 4)
    with pytest.raises(AdminError, match="no quota of its own"):
        await admin.clear_role_quota(**common, role_id=vip)
    with pytest.raises(AdminError, match="max_queued must be between 0 and 1000"):
        await admin.set_role_quota(**common, role_id=vip, max_running=1, max_queued=5000)


async def test_relax_off_refuses_relax_and_grants_are_paid(session: AsyncSession, guild_id: int) -> None:
    common = Acting(session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN)
    await admin.set_relax(**common, allowed=False)
    await admin.set_grants(**common, daily=7, monthly=0)
    guild = await _guild_row(session, guild_id)
    user = await repo.upsert_user(session=session, discord_id=next_id())

    with pytest.raises(Refused, match="does not allow the free relax lane"):
        await quotas.lane_for(session=session, guild_id=guild.id, requested=Lane.RELAX)
    assert (await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=guild.id)).daily == 7
    with pytest.raises(AdminError, match="between 0 and 100,000"):
        await admin.set_grants(**common, daily=-1, monthly=0)


async def test_nsfw_policy_and_gallery_switch_are_stored_and_logged(
    session: AsyncSession, guild_id: int
) -> None:
    common = Acting(session=session, guild_discord_id=guild_id, admin_discord_id=ADMIN)
    policy = await admin.set_nsfw_policy(**common, policy="withhold")
    assert policy.nsfw_policy is NsfwPolicy.WITHHOLD
    policy = await admin.set_gallery(**common, enabled=False)
    assert not policy.gallery_enabled
    with pytest.raises(AdminError, match="Choose one of spoiler, withhold, allow"):
        await admin.set_nsfw_policy(**common, policy="blur")

    guild = await _guild_row(session, guild_id)
    assert (guild.nsfw_policy, guild.gallery_enabled) == (NsfwPolicy.WITHHOLD, False)
    assert [(e.kind, e.detail) for e in await _events(session, guild_id)] == [
        ("admin_nsfw_policy", {"admin": ADMIN, "policy": "withhold"}),
        ("admin_gallery", {"admin": ADMIN, "enabled": False}),
    ]


# --------------------------------------------------------------------------- through Discord


@pytest.fixture
async def discord(fresh_db_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(fresh_db_url, redis_url, tmp_path) as harness:
        yield harness


async def _admin(
    h: Harness, command: str, options: dict[str, object] | None = None, user: str = "bob"
) -> str:
    """Run an /admin command and return the (ephemeral) answer."""
    interaction = await h.fake.slash(f"admin {command}", options or {}, user=user)
    answer = await h.answer(interaction)
    assert answer.ephemeral, f"/admin {command} answered in public: {answer.content}"
    return answer.content


async def test_a_grant_by_an_admin_shows_in_the_members_balance(discord: Harness) -> None:
    h = discord
    alice = h.fake.user("alice")

    said = await _admin(h, "grant", {"member": alice.id, "amount": 30})
    info = await h.answer(await h.fake.slash("info", user="alice"))

    assert said == f"Gave <@{alice.id}> 30 credits. Their balance: 30 credits."
    assert "**Credits:** 30" in info.content


async def test_a_banned_word_is_refused_and_an_invalid_pattern_explained(discord: Harness) -> None:
    h = discord
    await h.grant("alice", 5)

    added = await _admin(h, "words add", {"entry": "pineapple"})
    broken = await _admin(h, "words add", {"entry": "re:[a-"})
    listed = await _admin(h, "words list")
    refused = await h.answer(await h.fake.slash("imagine", {"prompt": "a pineapple pizza"}, user="alice"))

    assert added == "Prompts with `pineapple` are now refused (1 on the list)."
    assert broken == "`[a-` is not a valid regular expression: unterminated character set at position 0."
    assert listed == "**Banned words and patterns**\n`pineapple`"
    assert refused.ephemeral and "`pineapple`" in refused.content


async def test_a_member_banned_here_is_told_so_and_an_unban_lifts_it(discord: Harness) -> None:
    h = discord
    alice = h.fake.user("alice")
    await h.grant("alice", 5)

    await _admin(h, "ban", {"member": alice.id, "reason": "flooding"})
    refused = await h.answer(await h.fake.slash("imagine", {"prompt": "a quiet lake"}, user="alice"))
    await _admin(h, "unban", {"member": alice.id})
    accepted = await h.fake.slash("imagine", {"prompt": "a quiet lake"}, user="alice")
    await h.fake.wait_for(
        lambda: accepted.original is not None and not accepted.original.loading, what="the ack"
    )

    assert refused.ephemeral
    assert refused.content == "This server's admins have banned you from making images here. Reason: flooding"
    assert accepted.original is not None and not accepted.original.ephemeral


async def test_members_without_manage_server_are_turned_away(discord: Harness) -> None:
    h = discord
    alice = h.fake.user("alice")

    said = await _admin(h, "grant", {"member": alice.id, "amount": 1000}, user="alice")

    assert said == "Admin commands need the Manage Server permission."
    assert "**Credits:** 0" in (await h.answer(await h.fake.slash("info", user="alice"))).content
    [admin_command] = [c for c in h.fake.commands.get(None, []) if c["name"] == "admin"]
    assert (
        int(admin_command["default_member_permissions"]) == discord_api.Permissions(manage_guild=True).value
    )


async def test_model_autocomplete_offers_the_catalog_and_the_policy_is_shown(discord: Harness) -> None:
    h = discord

    typed = await h.fake.autocomplete("admin models allow", {"model": "ti"}, "model", user="bob")
    await h.fake.wait_for(lambda: typed.choices is not None, what="autocomplete choices")
    shown = await _admin(h, "show")

    assert [c["value"] for c in typed.choices or []] == ["tiny"]
    assert "Caps: 3 rendering, 10 waiting per member" in shown
    assert "Models: all `shapes`, `tiny`" in shown
