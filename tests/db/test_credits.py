"""Credit movements: grant, hold, capture, release, and the balance/ledger agreement."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import Lane
from db import repositories as repo
from db.models import CreditLedger, Job, LedgerKind, User
from tests.db.factories import make_spec


async def _balance(session: AsyncSession, user: User) -> int:
    return (await session.scalar(select(User.balance).where(User.id == user.id))) or 0


async def _ledger_balance(session: AsyncSession, user: User) -> int:
    """The balance recomputed from the ledger alone."""
    delta = case(
        (CreditLedger.kind == LedgerKind.GRANT, CreditLedger.amount),
        (CreditLedger.kind == LedgerKind.HOLD, -CreditLedger.amount),
        (CreditLedger.kind == LedgerKind.RELEASE, CreditLedger.amount),
        else_=0,
    )
    return (
        await session.scalar(select(func.coalesce(func.sum(delta), 0)).where(CreditLedger.user_id == user.id))
    ) or 0


async def _bare_job(session: AsyncSession, user: User) -> Job:
    """A queued job with no hold (cost 0), to hold credits for by hand."""
    return (
        await repo.create_job(
            session=session, user_id=user.id, spec=make_spec(), model="tiny", lane=Lane.FAST, cost=0
        )
    ).job


async def test_grant_adds_to_the_balance_and_the_ledger(session: AsyncSession, user: User) -> None:
    assert await repo.grant_credits(session=session, user_id=user.id, amount=25)
    assert await _balance(session, user) == 125
    assert await _ledger_balance(session, user) == 125


async def test_a_keyed_grant_happens_once(session: AsyncSession, user: User) -> None:
    key = f"daily:{user.id}:2025-01-01"
    assert await repo.grant_credits(session=session, user_id=user.id, amount=10, key=key)
    assert not await repo.grant_credits(session=session, user_id=user.id, amount=10, key=key)
    assert await _balance(session, user) == 110


@pytest.mark.parametrize("amount", [0, -5])
async def test_grants_and_holds_must_be_positive(session: AsyncSession, user: User, amount: int) -> None:
    with pytest.raises(ValueError):
        await repo.grant_credits(session=session, user_id=user.id, amount=amount)
    with pytest.raises(ValueError):
        await repo.hold_credits(session=session, user_id=user.id, job_id=uuid.uuid4(), amount=amount)


async def test_hold_debits_when_the_balance_covers_it(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    assert await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=100)
    assert await _balance(session, user) == 0
    assert await _ledger_balance(session, user) == 0


async def test_hold_refuses_and_writes_nothing_when_short(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    assert not await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=101)
    assert await _balance(session, user) == 100
    holds = await session.scalar(select(func.count()).where(CreditLedger.job_id == job.id))
    assert holds == 0


async def test_capture_keeps_the_hold_once(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=30)
    assert await repo.capture_credits(session=session, job_id=job.id)
    assert not await repo.capture_credits(session=session, job_id=job.id)
    assert await _balance(session, user) == 70
    assert await _ledger_balance(session, user) == 70


async def test_release_refunds_once(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=30)
    assert await repo.release_credits(session=session, job_id=job.id)
    assert not await repo.release_credits(session=session, job_id=job.id)
    assert await _balance(session, user) == 100
    assert await _ledger_balance(session, user) == 100


async def test_a_captured_hold_is_never_refunded(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=30)
    await repo.capture_credits(session=session, job_id=job.id)
    assert not await repo.release_credits(session=session, job_id=job.id)
    assert await _balance(session, user) == 70


async def test_a_released_hold_is_never_captured(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=30)
    await repo.release_credits(session=session, job_id=job.id)
    assert not await repo.capture_credits(session=session, job_id=job.id)
    kinds = set(await session.scalars(select(CreditLedger.kind).where(CreditLedger.job_id == job.id)))
    assert kinds == {LedgerKind.HOLD, LedgerKind.RELEASE}


async def test_nothing_to_settle_for_a_free_job(session: AsyncSession, user: User) -> None:
    job = await _bare_job(session, user)
    assert not await repo.capture_credits(session=session, job_id=job.id)
    assert not await repo.release_credits(session=session, job_id=job.id)
    assert await _balance(session, user) == 100
