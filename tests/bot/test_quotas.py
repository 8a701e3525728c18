"""Caps, lanes, bans and scheduled grants, against the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, pool, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bot.services import quotas
from bot.services.errors import RefusalReason
from bot.services.quotas import QuotaError
from bot.services.user_settings import UserSettings
from core.spec import JobSpec, Lane, PromptPart
from db import repositories as repo
from db.models import CreditLedger, Guild, GuildBan, Job, User
from tests.bot.conftest import next_id

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


async def _user(session: AsyncSession, credits: int = 0) -> User:
    user = await repo.upsert_user(session=session, discord_id=next_id())
    if credits:
        await repo.grant_credits(session=session, user_id=user.id, amount=credits)
        await session.refresh(user)
    return user


async def _guild(session: AsyncSession, **policy: object) -> Guild:
    guild = await repo.upsert_guild(session=session, discord_id=next_id())
    if policy:
        guild = await repo.update_guild_policy(session=session, guild_id=guild.id, **policy)
    return guild


async def _jobs(session: AsyncSession, user: User, *, queued: int = 0, running: int = 0) -> None:
    for n in range(queued + running):
        new = await repo.create_job(
            session=session,
            user_id=user.id,
            spec=JobSpec(parts=(PromptPart(f"a lighthouse {n}"),)),
            model="tiny",
            lane=Lane.FAST,
            cost=0,
        )
        if n < running:
            assert await repo.claim_job(session=session, job_id=new.job.id) is not None


# --------------------------------------------------------------------------- caps


async def test_default_caps_refuse_the_eleventh_waiting_job_and_say_why(session: AsyncSession) -> None:
    user = await _user(session)
    guild = await _guild(session)
    await _jobs(session, user, queued=9)
    assert await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id) == quotas.Caps(3, 10)

    await _jobs(session, user, queued=1)
    with pytest.raises(QuotaError) as refused:
        await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id)

    assert refused.value.reason is RefusalReason.CAPS
    assert refused.value.message == (
        "You cannot queue another job yet. You have 0 jobs rendering and 10 jobs waiting; the limit "
        "on this server is 3 rendering and 10 waiting. Nothing was charged. Wait for some to "
        "finish, or cancel one with /queue."
    )


async def test_three_running_and_ten_waiting_is_the_most_a_user_can_have(session: AsyncSession) -> None:
    user = await _user(session)
    guild = await _guild(session)
    await _jobs(session, user, running=3, queued=9)
    await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id)
    await _jobs(session, user, queued=1)

    with pytest.raises(QuotaError, match="3 jobs rendering and 10 jobs waiting"):
        await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id)


async def test_a_request_of_several_jobs_must_fit_whole(session: AsyncSession) -> None:
    user = await _user(session)
    await _jobs(session, user, queued=8)

    await quotas.check_caps(session=session, user_id=user.id, guild_id=None, adding=2)
    with pytest.raises(QuotaError, match="This request makes 4 jobs but there is room for 2"):
        await quotas.check_caps(session=session, user_id=user.id, guild_id=None, adding=4)


async def test_a_refused_request_leaves_no_job_and_charges_nothing(session: AsyncSession) -> None:
    user = await _user(session, credits=5)
    guild = await _guild(session, max_queued=1)
    await _jobs(session, user, queued=1)

    # What the submit service does: admission and the paid job in one transaction.
    with pytest.raises(QuotaError):
        async with session.begin_nested():
            await quotas.admit(session=session, user_id=user.id, guild_id=guild.id)
            await repo.create_job(
                session=session,
                user_id=user.id,
                spec=JobSpec(parts=(PromptPart("one too many"),)),
                model="tiny",
                lane=Lane.FAST,
                cost=2,
            )

    await session.refresh(user)
    assert user.balance == 5
    assert await session.scalar(select(func.count()).where(Job.user_id == user.id)) == 1


async def test_a_server_sets_its_own_caps(session: AsyncSession) -> None:
    user = await _user(session)
    strict = await _guild(session, max_running=1, max_queued=2)
    await _jobs(session, user, queued=2)

    with pytest.raises(QuotaError, match="the limit on this server is 1 rendering and 2 waiting"):
        await quotas.check_caps(session=session, user_id=user.id, guild_id=strict.id)
    # The same user in a server with the defaults still has room.
    await quotas.check_caps(session=session, user_id=user.id, guild_id=(await _guild(session)).id)


async def test_the_most_generous_quota_role_wins_and_a_role_can_lower_the_caps(session: AsyncSession) -> None:
    patron, newcomer, plain = next_id(), next_id(), next_id()
    guild = await _guild(
        session,
        role_quotas={
            str(patron): {"max_running": 6, "max_queued": 20},
            str(newcomer): {"max_running": 1, "max_queued": 1},
        },
    )
    user = await _user(session)
    await _jobs(session, user, queued=15)

    await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id, role_ids=[newcomer, patron])
    with pytest.raises(QuotaError, match="limit on this server is 3 rendering and 10 waiting"):
        await quotas.check_caps(session=session, user_id=user.id, guild_id=guild.id, role_ids=[plain])
    with pytest.raises(QuotaError, match="limit on this server is 1 rendering and 1 waiting"):
        await quotas.check_caps(
            session=session, user_id=user.id, guild_id=guild.id, role_ids=[newcomer, plain]
        )


def test_a_role_may_set_one_number_and_inherit_the_other() -> None:
    guild = Guild(
        max_running=3, max_queued=10, role_quotas={"7": {"max_queued": 30}, "8": {"max_running": -1}}
    )
    assert quotas.caps_for(guild, [7, 8]) == quotas.Caps(max_running=3, max_queued=30)
    assert quotas.caps_for(None, [7]) == quotas.Caps(3, 10)


# --------------------------------------------------------------------------- lanes


async def test_relax_where_allowed_and_fast_by_default(session: AsyncSession) -> None:
    guild = await _guild(session)
    assert await quotas.lane_for(session=session, guild_id=guild.id, requested=None) is Lane.FAST
    assert await quotas.lane_for(session=session, guild_id=guild.id, requested=Lane.RELAX) is Lane.RELAX
    relaxed = UserSettings(lane=Lane.RELAX)
    assert (
        await quotas.lane_for(session=session, guild_id=guild.id, requested=None, user_settings=relaxed)
        is Lane.RELAX
    )
    # The prompt's flag beats the user's default.
    assert (
        await quotas.lane_for(session=session, guild_id=guild.id, requested=Lane.FAST, user_settings=relaxed)
        is Lane.FAST
    )


async def test_relax_is_refused_where_the_server_turned_it_off_with_the_fix(session: AsyncSession) -> None:
    guild = await _guild(session, relax_allowed=False)

    with pytest.raises(QuotaError, match="remove `--relax`") as asked:
        await quotas.lane_for(session=session, guild_id=guild.id, requested=Lane.RELAX)
    with pytest.raises(QuotaError, match="choose fast in /settings"):
        await quotas.lane_for(
            session=session, guild_id=guild.id, requested=None, user_settings=UserSettings(lane=Lane.RELAX)
        )

    assert asked.value.reason is RefusalReason.LANE
    assert await quotas.lane_for(session=session, guild_id=None, requested=Lane.RELAX) is Lane.RELAX


# --------------------------------------------------------------------------- bans


async def test_a_server_ban_applies_in_that_server_only(session: AsyncSession) -> None:
    user = await _user(session)
    banning, other = await _guild(session), await _guild(session)
    session.add(GuildBan(guild_id=banning.id, user_id=user.id, reason="spam"))
    await session.flush()

    with pytest.raises(QuotaError) as refused:
        await quotas.admit(session=session, user_id=user.id, guild_id=banning.id)

    assert refused.value.reason is RefusalReason.BANNED_USER
    assert (
        refused.value.message == "This server's admins have banned you from making images here. Reason: spam"
    )
    await quotas.admit(session=session, user_id=user.id, guild_id=other.id)
    await quotas.admit(session=session, user_id=user.id, guild_id=None)


async def test_the_operators_ban_applies_everywhere(session: AsyncSession) -> None:
    user = await _user(session)
    await repo.set_user_banned(session=session, user_id=user.id, banned=True)

    for guild_id in ((await _guild(session)).id, None):
        with pytest.raises(QuotaError, match="banned from making images with this bot"):
            await quotas.check_not_banned(session=session, user_id=user.id, guild_id=guild_id)


# --------------------------------------------------------------------------- grants


async def test_grants_are_paid_once_per_day_and_once_per_month(session: AsyncSession) -> None:
    user = await _user(session)
    guild = await _guild(session, daily_grant=5, monthly_grant=100)

    first = await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=guild.id, now=NOON)
    again = await quotas.apply_due_grants(
        session=session, user_id=user.id, guild_id=guild.id, now=NOON + timedelta(hours=11)
    )
    tomorrow = await quotas.apply_due_grants(
        session=session, user_id=user.id, guild_id=guild.id, now=NOON + timedelta(days=1)
    )
    next_month = await quotas.apply_due_grants(
        session=session, user_id=user.id, guild_id=guild.id, now=NOON + timedelta(days=20)
    )

    assert (first.daily, first.monthly) == (5, 100)
    assert again.total == 0
    assert (tomorrow.daily, tomorrow.monthly) == (5, 0)
    assert (next_month.daily, next_month.monthly) == (5, 100)
    await session.refresh(user)
    assert user.balance == 215


async def test_no_grants_configured_or_in_a_direct_message_pays_nothing(session: AsyncSession) -> None:
    user = await _user(session)
    plain = await _guild(session)

    assert (
        await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=plain.id, now=NOON)
    ).total == 0
    assert (
        await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=None, now=NOON)
    ).total == 0
    assert await session.scalar(select(func.count()).where(CreditLedger.user_id == user.id)) == 0


async def test_a_banned_member_gets_no_grant(session: AsyncSession) -> None:
    user = await _user(session)
    guild = await _guild(session, daily_grant=5)
    session.add(GuildBan(guild_id=guild.id, user_id=user.id))
    await session.flush()

    assert (
        await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=guild.id, now=NOON)
    ).total == 0


async def test_two_servers_grant_separately(session: AsyncSession) -> None:
    user = await _user(session)
    for guild in (await _guild(session, daily_grant=3), await _guild(session, daily_grant=4)):
        await quotas.apply_due_grants(session=session, user_id=user.id, guild_id=guild.id, now=NOON)
    await session.refresh(user)
    assert user.balance == 7


async def test_concurrent_requests_pay_a_period_once(fresh_db_url: str) -> None:
    engine = create_async_engine(fresh_db_url, poolclass=pool.NullPool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            user = await _user(session)
            guild = await _guild(session, daily_grant=5, monthly_grant=50)

        async def request() -> int:
            async with sessions() as session, session.begin():
                granted = await quotas.apply_due_grants(
                    session=session, user_id=user.id, guild_id=guild.id, now=NOON
                )
                return granted.total

        paid = await asyncio.gather(*(request() for _ in range(12)))

        assert sorted(paid) == [0] * 11 + [55]
        async with sessions() as session:
            assert await session.scalar(select(User.balance).where(User.id == user.id)) == 55
            rows = await session.scalar(select(func.count()).where(CreditLedger.user_id == user.id))
            assert rows == 2
    finally:
        await engine.dispose()
