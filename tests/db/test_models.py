"""The database itself refuses what must never happen, whatever code talks to it."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import Lane
from db import repositories as repo
from db.models import LEGAL_TRANSITIONS, CreditLedger, Job, JobStatus, User
from tests.db.factories import make_spec, next_discord_id


async def _job(session: AsyncSession, user: User, prompt: str = "a lighthouse at dusk") -> Job:
    new = await repo.create_job(
        session=session, user_id=user.id, spec=make_spec(prompt), model="tiny", lane=Lane.FAST, cost=4
    )
    return new.job


async def _force_status(session: AsyncSession, job: Job, status: JobStatus) -> None:
    """Walk a job to ``status`` along legal moves (the trigger checks every step)."""
    path = {
        JobStatus.QUEUED: [],
        JobStatus.RUNNING: ["running"],
        JobStatus.DONE: ["running", "done"],
        JobStatus.FAILED: ["failed"],
        JobStatus.CANCELLED: ["cancelled"],
    }[status]
    for step in path:
        await session.execute(text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": step, "id": job.id})


async def test_balance_can_never_go_negative(session: AsyncSession, user: User) -> None:
    with pytest.raises(IntegrityError, match="ck_users_balance_non_negative"):
        async with session.begin_nested():
            await session.execute(text("UPDATE users SET balance = -1 WHERE id = :id"), {"id": user.id})


ILLEGAL = [
    (a, b) for a, b in itertools.product(JobStatus, JobStatus) if a != b and (a, b) not in LEGAL_TRANSITIONS
]


@pytest.mark.parametrize(("start", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
async def test_illegal_status_transition_is_refused_by_the_database(
    session: AsyncSession, user: User, start: JobStatus, target: JobStatus
) -> None:
    job = await _job(session, user)
    await _force_status(session, job, start)
    with pytest.raises(DBAPIError, match="illegal job status transition"):
        async with session.begin_nested():
            await session.execute(
                text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": target.value, "id": job.id}
            )


@pytest.mark.parametrize(("start", "target"), sorted(LEGAL_TRANSITIONS), ids=lambda s: str(s))
async def test_legal_status_transitions_pass(
    session: AsyncSession, user: User, start: JobStatus, target: JobStatus
) -> None:
    job = await _job(session, user)
    await _force_status(session, job, start)
    await session.execute(
        text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": target.value, "id": job.id}
    )
    assert await session.scalar(select(Job.status).where(Job.id == job.id)) == target


async def test_a_job_cannot_be_inserted_already_done(session: AsyncSession, user: User) -> None:
    job = await _job(session, user)
    with pytest.raises(DBAPIError, match="a job starts queued"):
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO jobs (kind, user_id, prompt, params, model, seed, lane, status) "
                    "SELECT kind, user_id, prompt, params, model, seed, lane, 'done' FROM jobs WHERE id = :id"
                ),
                {"id": job.id},
            )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE credit_ledger SET amount = amount + 1 WHERE user_id = :uid",
        "DELETE FROM credit_ledger WHERE user_id = :uid",
        "TRUNCATE credit_ledger CASCADE",
    ],
    ids=["update", "delete", "truncate"],
)
async def test_credit_ledger_is_append_only(session: AsyncSession, user: User, statement: str) -> None:
    with pytest.raises(DBAPIError, match="credit_ledger is append-only"):
        async with session.begin_nested():
            await session.execute(text(statement), {"uid": user.id})
    rows = await session.scalar(select(func.count()).where(CreditLedger.user_id == user.id))
    assert rows == 1  # the grant is still there


async def test_a_job_is_held_at_most_once(session: AsyncSession, user: User) -> None:
    job = await _job(session, user)
    with pytest.raises(IntegrityError, match="uq_credit_ledger_job_id_kind"):
        async with session.begin_nested():
            await repo.hold_credits(session=session, user_id=user.id, job_id=job.id, amount=4)


async def test_nsfw_images_are_never_public(session: AsyncSession, user: User) -> None:
    job = await _job(session, user)
    with pytest.raises(IntegrityError, match="ck_images_nsfw_never_public"):
        async with session.begin_nested():
            await session.execute(
                text(
                    "INSERT INTO images (job_id, index, seed, storage_key, width, height, sha256, nsfw, public) "
                    "VALUES (:id, 0, 1, 'k', 64, 64, 'x', true, true)"
                ),
                {"id": job.id},
            )


async def test_prompts_are_full_text_searchable(session: AsyncSession, user: User) -> None:
    wanted = await _job(session, user, "castles floating above a misty valley")
    await _job(session, user, "a bowl of ramen")
    query = select(Job.id).where(
        Job.user_id == user.id,
        Job.prompt_tsv.bool_op("@@")(func.websearch_to_tsquery("english", "castle valley")),
    )
    assert list(await session.scalars(query)) == [wanted.id]


async def test_prompt_trigram_index_exists_when_pg_trgm_is_available(session: AsyncSession) -> None:
    available = await session.scalar(
        text("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'")
    )
    index = await session.scalar(
        text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_jobs_prompt_trgm'")
    )
    assert index == (1 if available else 0)


async def test_discord_ids_are_unique(session: AsyncSession) -> None:
    discord_id = next_discord_id()
    session.add(User(discord_id=discord_id))
    await session.flush()
    with pytest.raises(IntegrityError, match="uq_users_discord_id"):
        async with session.begin_nested():
            session.add(User(discord_id=discord_id))
            await session.flush()
