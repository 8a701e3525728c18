"""What a server's admins can change, as plain functions on the caller's session (no Discord).

Every action takes the Discord ids of the server and of the admin acting, checks its input
(an invalid value raises :class:`AdminError` with a message for the admin and changes
nothing), and leaves a trace: credits as a ledger row, everything else as a moderation
event of kind ``admin_<action>`` whose detail names the admin and the change. The caller
owns the transaction (``async with session.begin(): ...``).

Read-modify-write changes (banned words, role quotas, allowed models) lock the server's row
first, so two admins editing at once cannot lose each other's change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import RefusalReason, Refused
from core.models import LoraEntry, ModelCatalog, ModelEntry
from core.moderation import compile_banned_entry, normalise
from db.models import Guild, NsfwPolicy
from db.repositories import (
    balance_of,
    grant_credits,
    lock_guild,
    record_moderation_event,
    update_guild_policy,
    upsert_guild,
    upsert_user,
)
from db.repositories.bans import ban_member, banned_members, unban_member

MAX_GRANT = 1_000_000
MAX_SCHEDULED_GRANT = 100_000
MAX_RUNNING_CAP = 100
MAX_QUEUED_CAP = 1_000
MAX_BANNED_ENTRIES = 500
MAX_ENTRY_LENGTH = 200
MAX_BAN_REASON = 300


class AdminError(Refused):
    """An admin action turned down; ``message`` says why, and nothing was changed."""

    def __init__(self, message: str, *, reason: RefusalReason = RefusalReason.INPUT) -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True, slots=True)
class RoleQuota:
    """One role's caps; None means the server's number applies."""

    role_id: int
    max_running: int | None
    max_queued: int | None


@dataclass(frozen=True, slots=True)
class GuildPolicy:
    """A server's settings as its admins see them."""

    guild_id: int
    """``guilds.id``."""
    discord_id: int
    nsfw_policy: NsfwPolicy
    banned_words: tuple[str, ...]
    max_running: int
    max_queued: int
    gallery_enabled: bool
    relax_allowed: bool
    allowed_models: tuple[str, ...]
    """Empty: every model in the catalog."""
    role_quotas: tuple[RoleQuota, ...] = field(default=())
    daily_grant: int = 0
    monthly_grant: int = 0

    @classmethod
    def from_row(cls, guild: Guild) -> GuildPolicy:
        """The policy stored in a ``guilds`` row."""
        return cls(
            guild_id=guild.id,
            discord_id=guild.discord_id,
            nsfw_policy=guild.nsfw_policy,
            banned_words=tuple(guild.banned_words or ()),
            max_running=guild.max_running,
            max_queued=guild.max_queued,
            gallery_enabled=guild.gallery_enabled,
            relax_allowed=guild.relax_allowed,
            allowed_models=tuple(guild.allowed_models or ()),
            role_quotas=_role_quotas(guild.role_quotas),
            daily_grant=guild.daily_grant,
            monthly_grant=guild.monthly_grant,
        )


@dataclass(frozen=True, slots=True)
class GrantOutcome:
    """What :func:`grant` did."""

    granted: bool
    """False when the same grant (same key) had been made already."""
    amount: int
    balance: int
    """The user's balance afterwards."""


@dataclass(frozen=True, slots=True)
class WordListChange:
    """A server's banned words after an add or remove."""

    entries: tuple[str, ...]
    changed: bool
    """False when the entry was already on the list (add)."""


class HasAllowedModels(Protocol):
    """A server's policy or ``guilds`` row: anything that lists its allowed models."""

    @property
    def allowed_models(self) -> Sequence[str]: ...


# --------------------------------------------------------------------------- reading


async def get_policy(*, session: AsyncSession, guild_discord_id: int) -> GuildPolicy:
    """The server's policy (the defaults for a server the bot has not seen)."""
    return GuildPolicy.from_row(await upsert_guild(session=session, discord_id=guild_discord_id))


def allowed_model_names(catalog: ModelCatalog, policy: HasAllowedModels | None) -> list[str]:
    """The catalog's models a server allows, in catalog order (all of them when it sets none)."""
    allowed = {name.lower() for name in (policy.allowed_models if policy is not None else ())}
    return [name for name in catalog.names() if not allowed or name.lower() in allowed]


def validate_model(
    name: str | None, guild_policy: HasAllowedModels | None, *, catalog: ModelCatalog
) -> ModelEntry:
    """The catalog entry for ``name`` (None: the default model) if the server allows it.

    Autocomplete only suggests; a value typed or pasted by hand is checked here again.

    Raises:
        Refused: ``MODEL``: unknown, or not allowed on this server; the message lists the
            models the user can use.
    """
    usable = allowed_model_names(catalog, guild_policy)
    entry: ModelEntry | None
    try:
        entry = catalog.get(name)
    except KeyError:
        entry = None
    if entry is not None and entry.name in usable:
        return entry
    shown = name if name is not None else catalog.default.name
    what = "is not available" if entry is None else "is not allowed on this server"
    choices = ", ".join(f"`{m}`" for m in usable) or "none"
    raise Refused(f"The model `{shown}` {what}. Models you can use: {choices}.", reason=RefusalReason.MODEL)


def validate_lora(name: str, model: ModelEntry) -> LoraEntry:
    """The LoRA called ``name`` that ``model`` offers.

    Raises:
        Refused: ``INPUT``: the model has no such LoRA; the message lists the ones it has.
    """
    try:
        return model.lora(name)
    except KeyError:
        offered = ", ".join(f"`{e.name}`" for e in model.loras) or "none"
        raise Refused(
            f"The model `{model.name}` has no LoRA `{name}`. Its LoRAs: {offered}.",
            reason=RefusalReason.INPUT,
        ) from None


# --------------------------------------------------------------------------- credits and users


async def grant(
    *,
    session: AsyncSession,
    guild_discord_id: int,
    admin_discord_id: int,
    user_discord_id: int,
    amount: int,
    key: str | None = None,
) -> GrantOutcome:
    """Give a member credits (a ledger row, and an ``admin_grant`` event naming the admin).

    Args:
        key: makes the grant happen once (pass the interaction id: a retried command does
            not pay twice).

    Raises:
        AdminError: the amount is not between 1 and :data:`MAX_GRANT`.
    """
    if not 1 <= amount <= MAX_GRANT:
        raise AdminError(f"Grant between 1 and {MAX_GRANT:,} credits at a time.")
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    user = await upsert_user(session=session, discord_id=user_discord_id)
    granted = await grant_credits(session=session, user_id=user.id, amount=amount, key=key)
    if granted:
        await _record(
            session, guild, "grant", admin_discord_id, user_id=user.id, amount=amount, user=user_discord_id
        )
    balance = await balance_of(session=session, user_id=user.id)
    return GrantOutcome(granted=granted, amount=amount, balance=balance)


async def ban_user(
    *,
    session: AsyncSession,
    guild_discord_id: int,
    admin_discord_id: int,
    user_discord_id: int,
    reason: str | None = None,
) -> bool:
    """Ban a member from making images in this server (other servers are not affected).

    Returns:
        True if newly banned; False if they were banned already (the reason is updated).

    Raises:
        AdminError: an admin banning themselves, or a reason that is too long.
    """
    if user_discord_id == admin_discord_id:
        raise AdminError("You cannot ban yourself.")
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_BAN_REASON:
        raise AdminError(f"Keep the reason under {MAX_BAN_REASON} characters.")
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    user = await upsert_user(session=session, discord_id=user_discord_id)
    new = await ban_member(
        session=session, guild_id=guild.id, user_id=user.id, reason=reason, banned_by=admin_discord_id
    )
    await _record(
        session, guild, "ban", admin_discord_id, user_id=user.id, user=user_discord_id, reason=reason
    )
    return new


async def unban_user(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, user_discord_id: int
) -> bool:
    """Lift a member's ban in this server.

    Returns:
        True if they were banned; False if they were not (nothing changes then).
    """
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    user = await upsert_user(session=session, discord_id=user_discord_id)
    if not await unban_member(session=session, guild_id=guild.id, user_id=user.id):
        return False
    await _record(session, guild, "unban", admin_discord_id, user_id=user.id, user=user_discord_id)
    return True


async def banned_users(*, session: AsyncSession, guild_discord_id: int) -> list[tuple[int, str | None]]:
    """``(discord id, reason)`` of the server's banned members, most recent first."""
    return await banned_members(session=session, guild_discord_id=guild_discord_id)


# --------------------------------------------------------------------------- caps and grants


async def set_caps(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, max_running: int, max_queued: int
) -> GuildPolicy:
    """Set the server's caps for members without a quota role."""
    _check_caps(max_running, max_queued)
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(
        session=session, guild_id=guild.id, max_running=max_running, max_queued=max_queued
    )
    await _record(session, guild, "caps", admin_discord_id, max_running=max_running, max_queued=max_queued)
    return GuildPolicy.from_row(guild)


async def set_role_quota(
    *,
    session: AsyncSession,
    guild_discord_id: int,
    admin_discord_id: int,
    role_id: int,
    max_running: int | None,
    max_queued: int | None,
) -> GuildPolicy:
    """Give a role its own caps (None keeps the server's number for that one).

    A member with several quota roles gets the most generous of them; a role may set lower
    numbers than the server's (for newcomers, say).

    Raises:
        AdminError: both numbers left out, or out of range.
    """
    if max_running is None and max_queued is None:
        raise AdminError("Give max_running, max_queued or both.")
    _check_caps(max_running, max_queued)
    guild = await _locked_guild(session, guild_discord_id)
    quotas = dict(guild.role_quotas or {})
    entry: dict[str, int] = {}
    if max_running is not None:
        entry["max_running"] = max_running
    if max_queued is not None:
        entry["max_queued"] = max_queued
    quotas[str(role_id)] = entry
    guild = await update_guild_policy(session=session, guild_id=guild.id, role_quotas=quotas)
    await _record(session, guild, "role_quota", admin_discord_id, role=role_id, **entry)
    return GuildPolicy.from_row(guild)


async def clear_role_quota(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, role_id: int
) -> GuildPolicy:
    """Remove a role's caps (its members get the server's again).

    Raises:
        AdminError: the role has no caps of its own.
    """
    guild = await _locked_guild(session, guild_discord_id)
    quotas = dict(guild.role_quotas or {})
    if quotas.pop(str(role_id), None) is None:
        raise AdminError("That role has no quota of its own.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, role_quotas=quotas)
    await _record(session, guild, "role_quota_cleared", admin_discord_id, role=role_id)
    return GuildPolicy.from_row(guild)


async def set_grants(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, daily: int, monthly: int
) -> GuildPolicy:
    """Set the credits every member gets per UTC day and per UTC month (0: none).

    Members receive them on their first request of each period.
    """
    for value in (daily, monthly):
        if not 0 <= value <= MAX_SCHEDULED_GRANT:
            raise AdminError(f"Grants are between 0 and {MAX_SCHEDULED_GRANT:,} credits.")
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(
        session=session, guild_id=guild.id, daily_grant=daily, monthly_grant=monthly
    )
    await _record(session, guild, "grants", admin_discord_id, daily=daily, monthly=monthly)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- moderation


def check_banned_entry(entry: str) -> str:
    """A banned word or ``re:`` pattern as it will be stored, or why it cannot be.

    Raises:
        AdminError: empty, too long, an invalid regular expression (with the regex error),
            a pattern that matches an empty prompt (it would refuse every prompt), or a
            word with no letters or digits.
    """
    entry = entry.strip()
    if not entry or entry == "re:":
        raise AdminError("Give a word, a phrase, or `re:` followed by a regular expression.")
    if len(entry) > MAX_ENTRY_LENGTH:
        raise AdminError(f"Keep entries under {MAX_ENTRY_LENGTH} characters.")
    if entry.startswith("re:"):
        try:
            pattern = compile_banned_entry(entry)
        except re.error as exc:
            raise AdminError(f"`{entry[3:]}` is not a valid regular expression: {exc}.") from None
        if pattern.search(""):
            raise AdminError(f"`{entry[3:]}` matches an empty prompt, so it would refuse every prompt.")
        return entry
    if not normalise(entry):
        raise AdminError("A banned word needs letters or digits.")
    return entry


async def add_banned_word(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, entry: str
) -> WordListChange:
    """Add a banned word (whole words, any case) or ``re:`` pattern to the server's list.

    Raises:
        AdminError: see :func:`check_banned_entry`; or the list is full.
    """
    entry = check_banned_entry(entry)
    guild = await _locked_guild(session, guild_discord_id)
    entries = list(guild.banned_words or ())
    if any(_same_entry(existing, entry) for existing in entries):
        return WordListChange(tuple(entries), changed=False)
    if len(entries) >= MAX_BANNED_ENTRIES:
        raise AdminError(f"The list is full ({MAX_BANNED_ENTRIES} entries); remove some first.")
    entries.append(entry)
    guild = await update_guild_policy(session=session, guild_id=guild.id, banned_words=entries)
    await _record(session, guild, "banned_word_added", admin_discord_id, entry=entry)
    return WordListChange(tuple(guild.banned_words), changed=True)


async def remove_banned_word(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, entry: str
) -> WordListChange:
    """Take a word or pattern off the server's list.

    Raises:
        AdminError: it is not on the list.
    """
    guild = await _locked_guild(session, guild_discord_id)
    entries = list(guild.banned_words or ())
    kept = [existing for existing in entries if not _same_entry(existing, entry.strip())]
    if len(kept) == len(entries):
        raise AdminError(f"`{entry.strip()}` is not on this server's banned list.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, banned_words=kept)
    await _record(session, guild, "banned_word_removed", admin_discord_id, entry=entry.strip())
    return WordListChange(tuple(guild.banned_words), changed=True)


async def set_nsfw_policy(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, policy: NsfwPolicy | str
) -> GuildPolicy:
    """Choose what happens to images flagged NSFW outside NSFW channels (spoiler or withhold;
    ``allow`` posts them as they are in NSFW channels and behind a spoiler elsewhere).

    Raises:
        AdminError: not one of the policies.
    """
    try:
        chosen = NsfwPolicy(policy)
    except ValueError:
        raise AdminError(f"Choose one of {', '.join(p.value for p in NsfwPolicy)}.") from None
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, nsfw_policy=chosen)
    await _record(session, guild, "nsfw_policy", admin_discord_id, policy=chosen.value)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- features


async def allow_model(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, name: str, catalog: ModelCatalog
) -> GuildPolicy:
    """Let members use a model (a no-op while every model is allowed).

    Raises:
        AdminError: the catalog has no such model.
    """
    entry = _catalog_entry(catalog, name)
    guild = await _locked_guild(session, guild_discord_id)
    allowed = list(guild.allowed_models or ())
    if allowed and entry.name not in allowed:
        allowed.append(entry.name)
        guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=allowed)
        await _record(session, guild, "model_allowed", admin_discord_id, model=entry.name)
    return GuildPolicy.from_row(guild)


async def disallow_model(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, name: str, catalog: ModelCatalog
) -> GuildPolicy:
    """Stop members using a model; while every model was allowed, all the others stay allowed.

    Raises:
        AdminError: the catalog has no such model, or it is the last one allowed.
    """
    entry = _catalog_entry(catalog, name)
    guild = await _locked_guild(session, guild_discord_id)
    allowed = allowed_model_names(catalog, guild)
    if entry.name not in allowed:
        return GuildPolicy.from_row(guild)
    remaining = [m for m in allowed if m != entry.name]
    if not remaining:
        raise AdminError(f"`{entry.name}` is the only model allowed here; allow another one first.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=remaining)
    await _record(session, guild, "model_disallowed", admin_discord_id, model=entry.name)
    return GuildPolicy.from_row(guild)


async def allow_all_models(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int
) -> GuildPolicy:
    """Let members use every model the bot offers, including ones added later."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=[])
    await _record(session, guild, "models_all_allowed", admin_discord_id)
    return GuildPolicy.from_row(guild)


async def set_relax(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, allowed: bool
) -> GuildPolicy:
    """Allow or forbid the free, slower relax lane."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, relax_allowed=allowed)
    await _record(session, guild, "relax", admin_discord_id, allowed=allowed)
    return GuildPolicy.from_row(guild)


async def set_gallery(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, enabled: bool
) -> GuildPolicy:
    """Turn the server's ``/gallery`` on or off (published images stay published)."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, gallery_enabled=enabled)
    await _record(session, guild, "gallery", admin_discord_id, enabled=enabled)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- helpers


def _catalog_entry(catalog: ModelCatalog, name: str) -> ModelEntry:
    try:
        return catalog.get(name.strip())
    except KeyError:
        names = ", ".join(f"`{m}`" for m in catalog.names())
        raise AdminError(f"There is no model `{name.strip()}`. Models: {names}.") from None


def _check_caps(max_running: int | None, max_queued: int | None) -> None:
    if max_running is not None and not 0 <= max_running <= MAX_RUNNING_CAP:
        raise AdminError(f"max_running must be between 0 and {MAX_RUNNING_CAP}.")
    if max_queued is not None and not 0 <= max_queued <= MAX_QUEUED_CAP:
        raise AdminError(f"max_queued must be between 0 and {MAX_QUEUED_CAP}.")


def _same_entry(a: str, b: str) -> bool:
    # Words compare as the filter sees them (case and accents ignored); patterns as typed.
    if a.startswith("re:") or b.startswith("re:"):
        return a == b
    return normalise(a) == normalise(b)


def _role_quotas(raw: Mapping[str, Any] | None) -> tuple[RoleQuota, ...]:
    quotas = []
    for key, value in (raw or {}).items():
        if not key.isdigit() or not isinstance(value, Mapping):
            continue
        running, queued = value.get("max_running"), value.get("max_queued")
        quotas.append(
            RoleQuota(
                role_id=int(key),
                max_running=running if isinstance(running, int) else None,
                max_queued=queued if isinstance(queued, int) else None,
            )
        )
    return tuple(sorted(quotas, key=lambda q: q.role_id))


async def _locked_guild(session: AsyncSession, guild_discord_id: int) -> Guild:
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    return await lock_guild(session=session, guild_id=guild.id)


async def _record(
    session: AsyncSession, guild: Guild, action: str, admin_discord_id: int, **detail: Any
) -> None:
    user_id = detail.pop("user_id", None)
    await record_moderation_event(
        session=session,
        kind=f"admin_{action}",
        user_id=user_id,
        guild_id=guild.id,
        detail={"admin": admin_discord_id, **detail},
    )
