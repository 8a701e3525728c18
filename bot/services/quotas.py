"""Who may queue how much, in which lane, and the credits a server hands out on a schedule.

Plain async functions on the caller's session (no Discord): the submit service calls them
inside the transaction that holds the credits and creates the job, so a refusal rolls back
with it and nothing is charged. Ids are our own primary keys (``users.id``, ``guilds.id``),
as in :mod:`db.repositories`; ``guild_id`` is None in direct messages, where the defaults
apply.

Caps. A user may have at most ``max_queued`` jobs waiting, and at most
``max_running + max_queued`` unfinished jobs in all (defaults 3 and 10). A server sets its
own numbers, and may set them per role (``guilds.role_quotas``): a member with quota roles
gets, for each number, the most generous of those roles (so a role can also *lower* the
server's numbers, e.g. for newcomers); a member with none gets the server's.

Grants. A server may give every member who uses the bot ``daily_grant`` credits per UTC
day and ``monthly_grant`` per UTC month. They are paid lazily, on the member's first
request of the period, each as a ledger row whose idempotency key names the server, the
user and the period: a second payment of the same period is refused by the database's
unique index, however many requests race for it. Balances are per user, not per server, so
a member of two servers with grants receives both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import RefusalReason, Refused
from core.spec import Lane
from db.models import Guild
from db.repositories import ban_reasons, count_active_jobs, grant_credits, guild_by_id, lock_user

DEFAULT_MAX_RUNNING = 3
DEFAULT_MAX_QUEUED = 10


class QuotaError(Refused):
    """A request over a limit of the user or the server; ``message`` tells the user why.

    A :class:`~bot.services.errors.Refused`, so everything that reports refusals reports
    these too; ``reason`` is ``CAPS``, ``LANE`` or ``BANNED_USER``.
    """

    def __init__(self, message: str, *, reason: RefusalReason = RefusalReason.CAPS) -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True, slots=True)
class Caps:
    """How many unfinished jobs a user may have."""

    max_running: int = DEFAULT_MAX_RUNNING
    max_queued: int = DEFAULT_MAX_QUEUED


@dataclass(frozen=True, slots=True)
class Granted:
    """Credits :func:`apply_due_grants` paid just now (0 when already paid this period)."""

    daily: int = 0
    monthly: int = 0

    @property
    def total(self) -> int:
        return self.daily + self.monthly


@dataclass(frozen=True, slots=True)
class Admission:
    """What :func:`admit` found: the caps that apply and the grants it paid."""

    caps: Caps
    granted: Granted


class HasLane(Protocol):
    """Anything with a default lane, such as ``bot.services.user_settings.UserSettings``."""

    @property
    def lane(self) -> Lane | None: ...


def role_quota(quotas: Mapping[str, Any] | None, role_id: int) -> tuple[int | None, int | None]:
    """The ``(max_running, max_queued)`` a role sets; None where it sets nothing."""
    entry = (quotas or {}).get(str(role_id))
    if not isinstance(entry, Mapping):
        return None, None
    return _non_negative_int(entry.get("max_running")), _non_negative_int(entry.get("max_queued"))


def caps_for(guild: Guild | None, role_ids: Sequence[int] = ()) -> Caps:
    """The caps of a member with ``role_ids`` in ``guild`` (the defaults outside a server).

    For each number, the most generous of the member's roles that set it wins; where none
    of their roles sets it, the server's number applies.
    """
    if guild is None:
        return Caps()
    running: list[int] = []
    queued: list[int] = []
    for role_id in role_ids:
        role_running, role_queued = role_quota(guild.role_quotas, role_id)
        if role_running is not None:
            running.append(role_running)
        if role_queued is not None:
            queued.append(role_queued)
    return Caps(
        max_running=max(running) if running else guild.max_running,
        max_queued=max(queued) if queued else guild.max_queued,
    )


async def check_not_banned(*, session: AsyncSession, user_id: int, guild_id: int | None) -> None:
    """Refuse a user banned by the operator (everywhere) or by this server's admins.

    Raises:
        QuotaError: ``BANNED_USER``, with a message that says which ban applies.
    """
    everywhere, reason, here = await ban_reasons(session=session, user_id=user_id, guild_id=guild_id)
    if everywhere:
        raise QuotaError("You are banned from making images with this bot.", reason=RefusalReason.BANNED_USER)
    if here:
        why = f" Reason: {reason}" if reason else ""
        raise QuotaError(
            f"This server's admins have banned you from making images here.{why}",
            reason=RefusalReason.BANNED_USER,
        )


async def check_caps(
    *,
    session: AsyncSession,
    user_id: int,
    guild_id: int | None,
    role_ids: Sequence[int] = (),
    adding: int = 1,
) -> Caps:
    """Refuse a request that would take the user over their caps.

    Call it in the transaction that then creates the jobs: it locks the user's row, so two
    requests of one user at once are counted one after the other and cannot both slip in
    under the cap.

    Args:
        user_id: ``users.id``.
        guild_id: ``guilds.id``, or None in direct messages.
        role_ids: the member's Discord role ids (for per-role quotas).
        adding: how many jobs the request would queue (permutations, ``--repeat``).

    Returns:
        The caps that applied.

    Raises:
        QuotaError: ``CAPS``, with the counts and the limits; nothing has been written.
    """
    guild = await guild_by_id(session=session, guild_id=guild_id)
    caps = caps_for(guild, role_ids)
    await lock_user(session=session, user_id=user_id)
    active = await count_active_jobs(session=session, user_id=user_id)
    queued, running = active.queued, active.running
    room_queued = caps.max_queued - queued
    room_total = caps.max_queued + caps.max_running - queued - running
    if adding <= min(room_queued, room_total):
        return caps
    where = "on this server" if guild is not None else "here"
    have = f"You have {_jobs(running)} rendering and {_jobs(queued)} waiting"
    limit = f"the limit {where} is {caps.max_running} rendering and {caps.max_queued} waiting"
    room = max(0, min(room_queued, room_total))
    if adding > 1 and room > 0:
        ask = f"This request makes {adding} jobs but there is room for {room}."
    elif adding > 1:
        ask = f"This request makes {adding} jobs and there is no room for more."
    else:
        ask = "You cannot queue another job yet."
    raise QuotaError(
        f"{ask} {have}; {limit}. Nothing was charged. Wait for some to finish, or cancel one with /queue.",
        reason=RefusalReason.CAPS,
    )


async def lane_for(
    *,
    session: AsyncSession,
    guild_id: int | None,
    requested: Lane | None,
    user_settings: HasLane | None = None,
) -> Lane:
    """The lane a job runs in: the one the prompt asks for, else the user's default, else fast.

    Raises:
        QuotaError: ``LANE``: relax was asked for (in the prompt or as the user's default)
            where the server does not allow it; the message says how to fix it.
    """
    lane = requested or (user_settings.lane if user_settings is not None else None) or Lane.FAST
    if lane is not Lane.RELAX or guild_id is None:
        return lane
    guild = await guild_by_id(session=session, guild_id=guild_id)
    if guild is None or guild.relax_allowed:
        return lane
    if requested is Lane.RELAX:
        fix = "remove `--relax` to use the fast lane, which costs credits"
    else:
        fix = "your default lane is relax: choose fast in /settings, or add `--fast` to the prompt"
    raise QuotaError(
        f"This server does not allow the free relax lane; {fix}. Nothing was charged.",
        reason=RefusalReason.LANE,
    )


async def apply_due_grants(
    *, session: AsyncSession, user_id: int, guild_id: int | None, now: datetime | None = None
) -> Granted:
    """Pay the server's daily and monthly grants to the user, once per period each.

    Idempotent per period: the grant's ledger row carries the key
    ``grant:<daily|monthly>:<guild id>:<user id>:<period>``, unique in the ledger, so
    concurrent or repeated calls pay each period once. Periods are UTC days and months.
    Banned users and direct messages get nothing.

    Args:
        user_id: ``users.id``.
        guild_id: ``guilds.id``; None (a direct message) pays nothing.
        now: the moment of the request (defaults to now; tests pass their own).

    Returns:
        What this call paid.
    """
    if guild_id is None:
        return Granted()
    amounts = await guild_by_id(session=session, guild_id=guild_id)
    if amounts is None or not (amounts.daily_grant or amounts.monthly_grant):
        return Granted()
    if await _banned_anywhere(session, user_id, guild_id):
        return Granted()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    daily = monthly = 0
    if amounts.daily_grant > 0:
        key = grant_key("daily", guild_id=guild_id, user_id=user_id, now=moment)
        if await grant_credits(session=session, user_id=user_id, amount=amounts.daily_grant, key=key):
            daily = amounts.daily_grant
    if amounts.monthly_grant > 0:
        key = grant_key("monthly", guild_id=guild_id, user_id=user_id, now=moment)
        if await grant_credits(session=session, user_id=user_id, amount=amounts.monthly_grant, key=key):
            monthly = amounts.monthly_grant
    return Granted(daily=daily, monthly=monthly)


def grant_key(period: str, *, guild_id: int, user_id: int, now: datetime) -> str:
    """The ledger idempotency key of a scheduled grant (``period``: ``daily`` or ``monthly``)."""
    moment = now.astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%d") if period == "daily" else moment.strftime("%Y-%m")
    return f"grant:{period}:{guild_id}:{user_id}:{stamp}"


async def admit(
    *,
    session: AsyncSession,
    user_id: int,
    guild_id: int | None,
    role_ids: Sequence[int] = (),
    adding: int = 1,
    now: datetime | None = None,
) -> Admission:
    """Everything a request must pass before its credits are held, in order.

    Bans first (a banned user gets no grant), then the grants due (so today's grant can pay
    for this job), then the caps. Call it in the transaction that holds the credits.

    Raises:
        QuotaError: banned, or over the caps.
    """
    await check_not_banned(session=session, user_id=user_id, guild_id=guild_id)
    granted = await apply_due_grants(session=session, user_id=user_id, guild_id=guild_id, now=now)
    caps = await check_caps(
        session=session, user_id=user_id, guild_id=guild_id, role_ids=role_ids, adding=adding
    )
    return Admission(caps=caps, granted=granted)


async def _banned_anywhere(session: AsyncSession, user_id: int, guild_id: int) -> bool:
    everywhere, _, here = await ban_reasons(session=session, user_id=user_id, guild_id=guild_id)
    return everywhere or here


def _non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"
