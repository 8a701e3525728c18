"""A job that ends sends NOTIFY job_events with its id, only when that transaction commits."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy import pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from core.spec import Lane
from core.tasks import JOB_EVENTS_CHANNEL
from db import repositories as repo
from tests.db.factories import make_spec, next_discord_id


async def test_ended_jobs_are_announced_on_commit_only(db_url: str) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(make_url(db_url).set(drivername="postgresql").render_as_string(False))
    await listener.add_listener(JOB_EVENTS_CHANNEL, lambda *args: received.put_nowait(args[3]))
    engine = create_async_engine(db_url, poolclass=pool.NullPool)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            user = await repo.upsert_user(session=session, discord_id=next_discord_id())
            await repo.grant_credits(session=session, user_id=user.id, amount=10)
            jobs = [
                (
                    await repo.create_job(
                        session=session,
                        user_id=user.id,
                        spec=make_spec(),
                        model="tiny",
                        lane=Lane.FAST,
                        cost=1,
                    )
                ).job
                for _ in range(3)
            ]
        # Claiming is not an end: no notification.
        async with sessions() as session, session.begin():
            await repo.claim_job(session=session, job_id=jobs[0].id)
        # Ending inside a transaction that rolls back announces nothing.
        async with sessions() as session, session.begin():
            await repo.finish_job(session=session, job_id=jobs[0].id, images=[])
            await session.rollback()
        async with sessions() as session, session.begin():
            await repo.finish_job(session=session, job_id=jobs[0].id, images=[])
            # The trigger already announced it: announcing again in the same transaction
            # is delivered once.
            await repo.notify_job_event(session=session, job_id=jobs[0].id)
        async with sessions() as session, session.begin():
            await repo.fail_job(session=session, job_id=jobs[1].id, error="boom")
        async with sessions() as session, session.begin():
            await repo.cancel_job(session=session, job_id=jobs[2].id)

        got = [await asyncio.wait_for(received.get(), timeout=10) for _ in range(3)]
        assert [uuid.UUID(g) for g in got] == [j.id for j in jobs]
        await asyncio.sleep(0.2)
        assert received.empty()

        # A transaction that ends nothing can announce a job again explicitly.
        async with sessions() as session, session.begin():
            await repo.notify_job_event(session=session, job_id=jobs[1].id)
        assert uuid.UUID(await asyncio.wait_for(received.get(), timeout=10)) == jobs[1].id
    finally:
        await listener.close()
        await engine.dispose()
