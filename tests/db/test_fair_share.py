"""Fair share: which queued job a worker renders when a message names one."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import Lane
from db import repositories as repo
from db.models import Job, JobStatus
from tests.db.factories import make_spec, next_discord_id


async def _member(session: AsyncSession) -> int:
    user = await repo.upsert_user(session=session, discord_id=next_discord_id())
    await repo.grant_credits(session=session, user_id=user.id, amount=100)
    return user.id


_order = itertools.count()


async def _job(session: AsyncSession, user_id: int, *, model: str = "fair", lane: Lane = Lane.FAST) -> uuid.UUID:
    new = await repo.create_job(session=session, user_id=user_id, spec=make_spec(), model=model, lane=lane, cost=1)
    # One transaction has one now(): queue them a second apart, as separate requests are.
    await session.execute(
        update(Job).where(Job.id == new.job.id).values(queued_at=func.now() + timedelta(seconds=next(_order)))
    )
    return new.job.id


async def test_a_burst_gives_way_to_members_who_had_less(session: AsyncSession) -> None:
    burst, other = await _member(session), await _member(session)
    first, second, third = [await _job(session, burst) for _ in range(3)]
    theirs = await _job(session, other)
    # Nobody has had anything yet: the oldest job, the one the message names.
    assert await repo.fairer_job(session=session, job_id=first) is None
    # The burst's first job runs (and then ends): its next message gives way to the other's.
    assert await repo.claim_job(session=session, job_id=first) is not None
    assert await repo.fairer_job(session=session, job_id=second) == theirs
    await session.execute(update(Job).where(Job.id == first).values(status=JobStatus.DONE))
    assert await repo.fairer_job(session=session, job_id=second) == theirs
    assert await repo.fairer_job(session=session, job_id=theirs) is None
    # Another lane's or model's jobs never stand in.
    assert await _job(session, other, model="another") not in {
        await repo.fairer_job(session=session, job_id=third)
    }
    # A message whose job is done (another message rendered it) renders a queued one; a
    # running job's message is left to it (its worker may have died).
    assert await repo.fairer_job(session=session, job_id=first) == theirs
    assert await repo.claim_job(session=session, job_id=second) is not None
    assert await repo.fairer_job(session=session, job_id=second) is None


async def test_a_relax_message_gives_way_to_a_queued_fast_job_of_its_model(session: AsyncSession) -> None:
    member, other = await _member(session), await _member(session)
    relax = await _job(session, member, model="lanes", lane=Lane.RELAX)
    assert await repo.fast_job_instead(session=session, job_id=relax) is None  # no fast job waits
    await _job(session, member, model="other-model")  # another model's fast job never stands in
    assert await repo.fast_job_instead(session=session, job_id=relax) is None
    burst = [await _job(session, member, model="lanes") for _ in range(2)]
    theirs = await _job(session, other, model="lanes")
    assert await repo.fast_job_instead(session=session, job_id=relax) == (burst[0], "lanes")
    assert await repo.claim_job(session=session, job_id=burst[0]) is not None
    # Fair share among the fast jobs too: the member who has one running waits.
    assert await repo.fast_job_instead(session=session, job_id=relax) == (theirs, "lanes")
    # A fast job's message, or a relax job no longer queued, keeps its own.
    assert await repo.fast_job_instead(session=session, job_id=burst[1]) is None
    assert await repo.claim_job(session=session, job_id=relax) is not None
    assert await repo.fast_job_instead(session=session, job_id=relax) is None
