"""Concurrent requests on real, separate, committing connections never overspend a balance."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, pool, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from core.spec import Lane
from db import repositories as repo
from db.models import CreditLedger, Job, LedgerKind, User
from tests.db.factories import make_spec, next_discord_id

CONCURRENT = 50
COST = 7
AFFORDABLE = 10


async def _funded_user(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session, session.begin():
        user = await repo.upsert_user(session=session, discord_id=next_discord_id())
        await repo.grant_credits(session=session, user_id=user.id, amount=COST * AFFORDABLE)
        return user.id


async def _open_connections(engine: AsyncEngine, count: int) -> list[AsyncSession]:
    """``count`` sessions, each already holding its own server connection."""
    sessions = [AsyncSession(engine, expire_on_commit=False) for _ in range(count)]
    for session in sessions:
        await session.connection()
    return sessions


async def _start_together(sessions: list[AsyncSession], work: object) -> list[object]:
    gate = asyncio.Event()

    async def one(session: AsyncSession, number: int) -> object:
        await gate.wait()
        try:
            result = await work(session, number)  # type: ignore[operator]
            await session.commit()
            return result
        except Exception as exc:
            await session.rollback()
            return exc
        finally:
            await session.close()

    tasks = [asyncio.create_task(one(s, n)) for n, s in enumerate(sessions)]
    gate.set()
    return await asyncio.gather(*tasks)


async def _check_books(sessions: async_sessionmaker[AsyncSession], user_id: int, holds: int) -> None:
    async with sessions() as session:
        balance = await session.scalar(select(User.balance).where(User.id == user_id))
        ledger_holds = await session.scalar(
            select(func.count()).where(CreditLedger.user_id == user_id, CreditLedger.kind == LedgerKind.HOLD)
        )
    assert balance == COST * (AFFORDABLE - holds)
    assert ledger_holds == holds


async def test_fifty_concurrent_holds_on_a_balance_for_ten(fresh_db_url: str) -> None:
    engine = create_async_engine(fresh_db_url, poolclass=pool.NullPool)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        user_id = await _funded_user(factory)
        async with factory() as session, session.begin():
            job_ids = [
                (
                    await repo.create_job(
                        session=session,
                        user_id=user_id,
                        spec=make_spec(),
                        model="tiny",
                        lane=Lane.RELAX,
                        cost=0,
                    )
                ).job.id
                for _ in range(CONCURRENT)
            ]
        sessions = await _open_connections(engine, CONCURRENT)

        async def hold(session: AsyncSession, number: int) -> bool:
            return await repo.hold_credits(
                session=session, user_id=user_id, job_id=job_ids[number], amount=COST
            )

        results = await _start_together(sessions, hold)
        assert [r for r in results if not isinstance(r, bool)] == []
        assert results.count(True) == AFFORDABLE
        await _check_books(factory, user_id, holds=AFFORDABLE)
        async with factory() as session:
            assert await session.scalar(select(User.balance).where(User.id == user_id)) == 0
    finally:
        await engine.dispose()


async def test_fifty_concurrent_create_job_on_a_balance_for_ten(fresh_db_url: str) -> None:
    engine = create_async_engine(fresh_db_url, poolclass=pool.NullPool)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        user_id = await _funded_user(factory)
        sessions = await _open_connections(engine, CONCURRENT)

        async def create(session: AsyncSession, number: int) -> uuid.UUID:
            new = await repo.create_job(
                session=session,
                user_id=user_id,
                spec=make_spec(f"request {number}"),
                model="tiny",
                lane=Lane.FAST,
                cost=COST,
                interaction_id=next_discord_id(),
            )
            return new.job.id

        results = await _start_together(sessions, create)
        created = [r for r in results if isinstance(r, uuid.UUID)]
        refused = [r for r in results if isinstance(r, repo.InsufficientCredits)]
        assert (len(created), len(refused)) == (AFFORDABLE, CONCURRENT - AFFORDABLE)
        await _check_books(factory, user_id, holds=AFFORDABLE)
        async with factory() as session:
            jobs = await session.scalar(select(func.count()).where(Job.user_id == user_id))
        assert jobs == AFFORDABLE  # refused requests left no job behind
    finally:
        await engine.dispose()


async def test_the_same_interaction_at_once_makes_one_job_and_one_hold(fresh_db_url: str) -> None:
    engine = create_async_engine(fresh_db_url, poolclass=pool.NullPool)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        user_id = await _funded_user(factory)
        interaction = next_discord_id()
        sessions = await _open_connections(engine, 10)

        async def create(session: AsyncSession, number: int) -> repo.NewJob:
            return await repo.create_job(
                session=session,
                user_id=user_id,
                spec=make_spec(),
                model="tiny",
                lane=Lane.FAST,
                cost=COST,
                interaction_id=interaction,
            )

        results = await _start_together(sessions, create)
        assert all(isinstance(r, repo.NewJob) for r in results), results
        new_jobs = [r for r in results if isinstance(r, repo.NewJob)]
        assert [r.created for r in new_jobs].count(True) == 1
        assert len({r.job.id for r in new_jobs}) == 1
        await _check_books(factory, user_id, holds=1)
    finally:
        await engine.dispose()


async def test_a_redelivered_finish_and_a_racing_refund_settle_once(fresh_db_url: str) -> None:
    engine = create_async_engine(fresh_db_url, poolclass=pool.NullPool)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        user_id = await _funded_user(factory)
        async with factory() as session, session.begin():
            job = (
                await repo.create_job(
                    session=session,
                    user_id=user_id,
                    spec=make_spec(),
                    model="tiny",
                    lane=Lane.FAST,
                    cost=COST,
                )
            ).job
            await repo.claim_job(session=session, job_id=job.id)
        sessions = await _open_connections(engine, 10)

        async def settle(session: AsyncSession, number: int) -> bool:
            if number % 2:
                return await repo.fail_job(session=session, job_id=job.id, error="worker lost")
            return await repo.finish_job(session=session, job_id=job.id, images=[])

        results = await _start_together(sessions, settle)
        # Exactly one settles it; the rest find it ended (False) or refuse to finish a failed job.
        assert [r for r in results if r is True] == [True]
        async with factory() as session:
            kinds = list(
                await session.scalars(select(CreditLedger.kind).where(CreditLedger.job_id == job.id))
            )
            balance = await session.scalar(select(User.balance).where(User.id == user_id))
        assert len(kinds) == 2 and LedgerKind.HOLD in kinds
        assert balance == COST * AFFORDABLE - (COST if LedgerKind.CAPTURE in kinds else 0)
    finally:
        await engine.dispose()
