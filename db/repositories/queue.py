"""The queue as the bot sees it: active jobs, positions, what is still to publish or to post."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.spec import Lane
from db.models import Job, JobStatus, Outbox


@dataclass(frozen=True, slots=True)
class ActiveJobs:
    """A user's jobs that count against their caps."""

    queued: int
    running: int


async def count_active_jobs(*, session: AsyncSession, user_id: int) -> ActiveJobs:
    """How many of the user's jobs are queued and running (for the per-user caps)."""
    stmt = select(
        func.count().filter(Job.status == JobStatus.QUEUED),
        func.count().filter(Job.status == JobStatus.RUNNING),
    ).where(Job.user_id == user_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    queued, running = (await session.execute(stmt)).one()
    return ActiveJobs(queued=queued, running=running)


async def undelivered_jobs(*, session: AsyncSession, older_than: timedelta, limit: int = 100) -> list[Job]:
    """Jobs with a result (:attr:`db.models.Job.has_result`) that ended over ``older_than`` ago and have no result message.

    The bot posts results when ``NOTIFY job_events`` arrives; this finds the ones whose
    notification it missed (it was down), oldest first.
    """
    stmt = (
        select(Job)
        .where(
            Job.has_result,
            Job.result_message_id.is_(None),
            Job.finished_at < func.now() - older_than,
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def unpublished_outbox(
    *, session: AsyncSession, limit: int = 100, older_than: timedelta | None = None
) -> list[Outbox]:
    """Outbox rows not yet published, oldest first, locked for this transaction.

    Rows another publisher holds are skipped (``SKIP LOCKED``), so several publishers can
    drain the outbox at once without sending a row twice.
    """
    stmt = select(Outbox).where(Outbox.published_at.is_(None))
    if older_than is not None:
        stmt = stmt.where(Outbox.created_at < func.now() - older_than)
    stmt = stmt.order_by(Outbox.created_at, Outbox.id).limit(limit).with_for_update(skip_locked=True)
    return list(await session.scalars(stmt))


async def mark_outbox_published(*, session: AsyncSession, outbox_ids: Sequence[int]) -> int:
    """Mark outbox rows published; returns how many were still unpublished."""
    if not outbox_ids:
        return 0
    stmt = (
        update(Outbox)
        .where(Outbox.id.in_(list(outbox_ids)), Outbox.published_at.is_(None))
        .values(published_at=func.now())
        .returning(Outbox.id)
    )
    return len((await session.execute(stmt)).all())


async def active_jobs(*, session: AsyncSession, user_id: int, limit: int) -> list[Job]:
    """The user's queued and running jobs, oldest first."""
    return list(
        await session.scalars(
            select(Job)
            .where(Job.user_id == user_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
            .order_by(Job.queued_at)
            .limit(limit)
        )
    )


async def queue_position(*, session: AsyncSession, job: Job) -> int:
    """Where a queued job stands: 1 is next. 0 when it is no longer queued.

    Workers take fast-lane jobs before relax-lane ones and serve each model from its own
    queue, so only jobs of the same model that a worker would take first are counted.
    """
    status = await session.scalar(select(Job.status).where(Job.id == job.id))
    if status != JobStatus.QUEUED:
        return 0
    earlier = (Job.queued_at < job.queued_at) | ((Job.queued_at == job.queued_at) & (Job.id < job.id))
    fast = Job.lane == Lane.FAST
    ahead = (fast & earlier) if job.lane is Lane.FAST else or_(fast, earlier)
    count = await session.scalar(
        select(func.count()).where(
            Job.status == JobStatus.QUEUED, Job.model == job.model, Job.id != job.id, ahead
        )
    )
    return int(count or 0) + 1


async def render_targets(
    *, session: AsyncSession, job_ids: Sequence[uuid.UUID], queued_only: bool = False
) -> list[tuple[uuid.UUID, Lane, str]]:
    """``(job id, lane, model)`` of jobs to publish: what picks their queue (of those still
    queued only, when asked)."""
    query = select(Job.id, Job.lane, Job.model).where(Job.id.in_(list(job_ids)))
    if queued_only:
        query = query.where(Job.status == JobStatus.QUEUED)
    rows = await session.execute(query)
    return [(job_id, lane, model) for job_id, lane, model in rows]


async def mark_jobs_published(*, session: AsyncSession, job_ids: Sequence[uuid.UUID]) -> None:
    """Mark the outbox rows of jobs whose render task was sent."""
    await session.execute(
        update(Outbox)
        .where(Outbox.job_id.in_(list(job_ids)), Outbox.published_at.is_(None))
        .values(published_at=func.now())
    )


async def ended_without_message(
    *, session: AsyncSession, within: timedelta, limit: int = 200
) -> list[uuid.UUID]:
    """Jobs with a result to post (:attr:`db.models.Job.has_result`) that ended in the last ``within`` and have no result message
    yet, oldest first; only those with somewhere to post (a channel or an interaction)."""
    return list(
        await session.scalars(
            select(Job.id)
            .where(
                Job.has_result,
                Job.result_message_id.is_(None),
                Job.channel_id.is_not(None) | Job.interaction_token.is_not(None),
                Job.finished_at > func.now() - within,
            )
            .order_by(Job.finished_at)
            .limit(limit)
        )
    )


async def queue_depth(*, session: AsyncSession) -> dict[tuple[str, str], int]:
    """Queued jobs by ``(lane, model)``."""
    rows = await session.execute(
        select(Job.lane, Job.model, func.count()).where(Job.status == JobStatus.QUEUED).group_by(Job.lane, Job.model)
    )
    return {(lane.value, model): int(count) for lane, model, count in rows}


async def queued_models(*, session: AsyncSession) -> list[str]:
    """The models that have queued jobs."""
    return list(await session.scalars(select(Job.model).where(Job.status == JobStatus.QUEUED).distinct()))


async def queued_before(
    *, session: AsyncSession, model: str, before: datetime, limit: int = 500
) -> list[uuid.UUID]:
    """Ids of ``model``'s jobs queued before ``before`` and still waiting, oldest first."""
    return list(
        await session.scalars(
            select(Job.id)
            .where(Job.status == JobStatus.QUEUED, Job.model == model, Job.queued_at < before)
            .order_by(Job.queued_at)
            .limit(limit)
        )
    )


FAIR_WINDOW = 200
"""How many of the oldest queued jobs of a lane and model fair share chooses among."""
FAIR_SPAN = timedelta(minutes=10)
"""How far back fair share counts the jobs each member had rendered."""


async def fairer_job(
    *, session: AsyncSession, job_id: uuid.UUID, instead_of_running: bool = False
) -> uuid.UUID | None:
    """The queued job a worker should render instead of ``job_id`` (the one its message
    named), or None to render that one.

    Fair share per user across every worker: of the oldest queued jobs of the same lane and
    model, the one whose owner has the fewest jobs running now, then the fewest started in
    the last :data:`FAIR_SPAN`, oldest first among equals. A burst of forty jobs from one
    member then takes its turns with everyone else's instead of holding the GPUs until it
    is through. Every message still renders one job: the message of the job picked here
    will render another (this one, eventually); and a message whose job was rendered by
    another's (done, failed or cancelled since) renders the fairest queued job instead. A
    running job is left to its message (its worker may have died: the lease says), unless
    ``instead_of_running`` (its lease is held: a live worker renders it, or is about to, and
    it is not picked).
    """
    row = (
        await session.execute(select(Job.status, Job.lane, Job.model).where(Job.id == job_id))
    ).first()
    if row is None or (row.status is JobStatus.RUNNING and not instead_of_running):
        return None
    pick = await _fairest(session, lane=row.lane, model=row.model, besides=job_id if instead_of_running else None)
    return pick if pick is not None and pick != job_id else None


async def fast_job_instead(*, session: AsyncSession, job_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    """For the message of a queued relax-lane job: the fairest queued fast-lane job of the same
    model and that model, or None (the job is not a queued relax one, or no fast job waits).

    The fast lane goes first on every broker: Redis polls a worker's queues in order, but
    RabbitMQ delivers from a worker's queues in turn, so a relax message may arrive while a
    fast job waits; its worker renders the fast job and sends the relax message again.
    """
    row = (await session.execute(select(Job.status, Job.lane, Job.model).where(Job.id == job_id))).first()
    if row is None or row.status is not JobStatus.QUEUED or row.lane is not Lane.RELAX:
        return None
    pick = await _fairest(session, lane=Lane.FAST, model=row.model, besides=None)
    return (pick, row.model) if pick is not None else None


async def _fairest(
    session: AsyncSession, *, lane: Lane, model: str, besides: uuid.UUID | None
) -> uuid.UUID | None:
    """Of the oldest queued jobs of ``lane`` and ``model`` (but ``besides``), the one whose
    owner has the fewest running, then the fewest started in the last :data:`FAIR_SPAN`."""
    oldest = (
        select(Job.id, Job.user_id, Job.queued_at)
        .where(Job.status == JobStatus.QUEUED, Job.lane == lane, Job.model == model)
        # A job another worker holds is not this message's to pick.
        .where(Job.id != besides if besides is not None else true())
        .order_by(Job.queued_at, Job.id)
        .limit(FAIR_WINDOW)
        .subquery()
    )
    theirs = aliased(Job)
    running = (
        select(func.count())
        .where(theirs.user_id == oldest.c.user_id, theirs.status == JobStatus.RUNNING)
        .scalar_subquery()
    )
    recent = (
        select(func.count())
        .where(theirs.user_id == oldest.c.user_id, theirs.started_at > func.now() - FAIR_SPAN)
        .scalar_subquery()
    )
    return await session.scalar(
        select(oldest.c.id).order_by(running, recent, oldest.c.queued_at, oldest.c.id).limit(1)
    )


async def batch_companions(*, session: AsyncSession, job_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    """Queued jobs that one pipeline call may render together with ``job_id`` (the same
    model, lane and :func:`core.batching.batch_key`), at most ``limit``: each member's oldest
    first, then each member's second, and so on, so that one member's burst does not fill
    every batch while others wait. Empty when the job has no key."""
    row = (await session.execute(select(Job.lane, Job.model, Job.batch_key).where(Job.id == job_id))).first()
    if row is None or row.batch_key is None or limit <= 0:
        return []
    turn = func.row_number().over(partition_by=Job.user_id, order_by=(Job.queued_at, Job.id)).label("turn")
    candidates = (
        select(Job.id, Job.queued_at, turn)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.model == row.model,
            Job.lane == row.lane,
            Job.batch_key == row.batch_key,
            Job.id != job_id,
        )
        .order_by(Job.queued_at, Job.id)
        .limit(FAIR_WINDOW)
        .subquery()
    )
    picked = select(candidates.c.id).order_by(candidates.c.turn, candidates.c.queued_at, candidates.c.id).limit(limit)
    return list(await session.scalars(picked))
