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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import RefusalReason, Refused
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


# --------------------------------------------------------------------------- reading


async def get_policy(*, session: AsyncSession, guild_discord_id: int) -> GuildPolicy:
    """The server's policy (the defaults for a server the bot has not seen)."""
    return GuildPolicy.from_row(await upsert_guild(session=session, discord_id=guild_discord_id))


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
        await record_action(
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
    await record_action(
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
    await record_action(session, guild, "unban", admin_discord_id, user_id=user.id, user=user_discord_id)
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
    await record_action(session, guild, "caps", admin_discord_id, max_running=max_running, max_queued=max_queued)
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
    guild = await locked_guild(session, guild_discord_id)
    quotas = dict(guild.role_quotas or {})
    entry: dict[str, int] = {}
    if max_running is not None:
        entry["max_running"] = max_running
    if max_queued is not None:
        entry["max_queued"] = max_queued
    quotas[str(role_id)] = entry
    guild = await update_guild_policy(session=session, guild_id=guild.id, role_quotas=quotas)
    await record_action(session, guild, "role_quota", admin_discord_id, role=role_id, **entry)
    return GuildPolicy.from_row(guild)


async def clear_role_quota(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, role_id: int
) -> GuildPolicy:
    """Remove a role's caps (its members get the server's again).

    Raises:
        AdminError: the role has no caps of its own.
    """
    guild = await locked_guild(session, guild_discord_id)
    quotas = dict(guild.role_quotas or {})
    if quotas.pop(str(role_id), None) is None:
        raise AdminError("That role has no quota of its own.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, role_quotas=quotas)
    await record_action(session, guild, "role_quota_cleared", admin_discord_id, role=role_id)
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
    await record_action(session, guild, "grants", admin_discord_id, daily=daily, monthly=monthly)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- NSFW


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
    await record_action(session, guild, "nsfw_policy", admin_discord_id, policy=chosen.value)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- lanes and gallery


async def set_relax(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, allowed: bool
) -> GuildPolicy:
    """Allow or forbid the free, slower relax lane."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, relax_allowed=allowed)
    await record_action(session, guild, "relax", admin_discord_id, allowed=allowed)
    return GuildPolicy.from_row(guild)


async def set_gallery(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, enabled: bool
) -> GuildPolicy:
    """Turn the server's ``/gallery`` on or off (published images stay published)."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, gallery_enabled=enabled)
    await record_action(session, guild, "gallery", admin_discord_id, enabled=enabled)
    return GuildPolicy.from_row(guild)


# --------------------------------------------------------------------------- helpers


def _check_caps(max_running: int | None, max_queued: int | None) -> None:
    if max_running is not None and not 0 <= max_running <= MAX_RUNNING_CAP:
        raise AdminError(f"max_running must be between 0 and {MAX_RUNNING_CAP}.")
    if max_queued is not None and not 0 <= max_queued <= MAX_QUEUED_CAP:
        raise AdminError(f"max_queued must be between 0 and {MAX_QUEUED_CAP}.")


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


async def locked_guild(session: AsyncSession, guild_discord_id: int) -> Guild:
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    return await lock_guild(session=session, guild_id=guild.id)


async def record_action(
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
