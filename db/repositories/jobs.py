"""Jobs from creation to a terminal state, with their images and outbox rows.

Every state change is one conditional UPDATE (``... WHERE status = 'queued'``), so two
workers, a redelivered task or a reconciler racing on the same job cannot both win, and
a database trigger refuses any transition that is not legal. Credits move with the job:
held on creation, captured on done, released on failed or cancelled, and for a job its
owner stopped while it rendered, captured with the unrendered share refunded.

Longer than 400 lines on purpose: every move of a job's state, and the credits that move
with it, in one place beside the trigger's list of legal moves.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.util import identity_key

from core.batching import batch_key
from core.spec import JobKind, JobSpec, Lane
from core.tasks import JOB_EVENTS_CHANNEL, MAX_ATTEMPTS, RENDER_TASK
from db.errors import InsufficientCredits, JobStateError
from db.models import Image, Job, JobStatus, Outbox, User
from db.repositories.credits import capture_credits, hold_credits, refund_credits, release_credits


@dataclass(frozen=True, slots=True)
class NewJob:
    """What :func:`create_job` returns."""

    job: Job
    created: bool
    """False when a job with the same interaction id already existed (nothing new was held)."""


@dataclass(frozen=True, slots=True)
class NewImage:
    """One rendered image to store with a finished job."""

    index: int
    seed: int
    storage_key: str
    width: int
    height: int
    sha256: str
    nsfw_score: float | None = None
    nsfw: bool = False
    public: bool = True
    """Whether it may appear in the gallery; NSFW images and private jobs' images never do."""
    thumbnail_key: str | None = None


async def create_job(
    *,
    session: AsyncSession,
    user_id: int,
    spec: JobSpec,
    model: str,
    lane: Lane,
    cost: int,
    kind: JobKind = JobKind.IMAGINE,
    variant: str | None = None,
    parent_id: uuid.UUID | None = None,
    parent_index: int | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    interaction_id: int | None = None,
    interaction_token: str | None = None,
    interaction_created_at: datetime | None = None,
    private: bool = False,
    task_name: str = RENDER_TASK,
) -> NewJob:
    """Queue a job: insert it, hold its cost and write its outbox row, all or nothing.

    Idempotent on ``interaction_id``: a second call with the same id returns the first job
    with ``created=False`` and holds nothing more. A spec without a seed gets one drawn
    here, so the job can be rendered again identically. The caller commits, then publishes
    the outbox row.

    Args:
        user_id, guild_id: ``users.id`` / ``guilds.id`` (not Discord ids).
        cost: credits to hold; 0 for free jobs (no ledger row then).

    Raises:
        InsufficientCredits: the balance is short; nothing of this job was written, even
            if the caller goes on to commit its transaction.
    """
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost}")
    if spec.seed is None:
        spec = replace(spec, seed=secrets.randbelow(2**32))
    assert spec.seed is not None  # for mypy: set just above
    job_id = uuid.uuid4()
    values = {
        "id": job_id,
        "kind": kind,
        "variant": variant,
        "parent_id": parent_id,
        "parent_index": parent_index,
        "user_id": user_id,
        "guild_id": guild_id,
        "channel_id": channel_id,
        "interaction_id": interaction_id,
        "interaction_token": interaction_token,
        "interaction_created_at": interaction_created_at,
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "params": spec.to_dict(),
        "model": model,
        "seed": spec.seed,
        "lane": lane,
        "cost": cost,
        "private": private,
        "batch_key": batch_key(kind, variant, spec),
    }
    # A savepoint: when the hold is refused, the job row goes too, whatever the caller's
    # transaction does next.
    async with session.begin_nested():
        stmt = (
            pg_insert(Job)
            .values(values)
            .on_conflict_do_nothing(index_elements=[Job.interaction_id])
            .returning(Job)
        )
        job = (await session.scalars(stmt)).one_or_none()
        if job is None:
            # A concurrent insert of the same interaction waits for the other transaction,
            # so by now the first job is committed and visible.
            existing = await session.scalar(select(Job).where(Job.interaction_id == interaction_id))
            if existing is None:  # pragma: no cover - only if that other transaction rolled back mid-read
                raise RuntimeError(f"job for interaction {interaction_id} vanished; retry")
            return NewJob(job=existing, created=False)
        if cost > 0 and not await hold_credits(session=session, user_id=user_id, job_id=job_id, amount=cost):
            balance = await session.scalar(select(User.balance).where(User.id == user_id))
            raise InsufficientCredits(user_id=user_id, needed=cost, balance=balance or 0)
        session.add(Outbox(job_id=job_id, task_name=task_name))
    return NewJob(job=job, created=True)


async def get_job(*, session: AsyncSession, job_id: uuid.UUID, with_images: bool = False) -> Job | None:
    """The job (optionally with its images loaded), or None."""
    stmt = select(Job).where(Job.id == job_id)
    if with_images:
        stmt = stmt.options(selectinload(Job.images))
    return await session.scalar(stmt)


async def job_params(*, session: AsyncSession, job_id: uuid.UUID) -> dict[str, object] | None:
    """A job's spec as stored (``JobSpec.to_dict``), without loading the row."""
    return await session.scalar(select(Job.params).where(Job.id == job_id))


async def get_job_by_interaction(*, session: AsyncSession, interaction_id: int) -> Job | None:
    """The job created for a Discord interaction, or None."""
    return await session.scalar(select(Job).where(Job.interaction_id == interaction_id))


async def claim_job(*, session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """Move a queued job to running for this worker and count the attempt.

    Returns:
        The job, or None when it is not queued (already claimed, finished, cancelled) or
        has used up its :data:`core.tasks.MAX_ATTEMPTS`: a redelivered task then does nothing.
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED, Job.attempts < MAX_ATTEMPTS)
        .values(status=JobStatus.RUNNING, attempts=Job.attempts + 1, started_at=func.now())
        .returning(Job)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one_or_none()


async def requeue_job(
    *, session: AsyncSession, job_id: uuid.UUID, error: str | None = None
) -> JobStatus | None:
    """Put a running job back in the queue for another attempt (e.g. its worker died).

    A job that has used all its attempts fails instead, and its credits are released.

    Returns:
        The job's new status (queued or failed), or None if the job was not running.
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.attempts < MAX_ATTEMPTS)
        .values(status=JobStatus.QUEUED, queued_at=func.now(), started_at=None, error=error)
        .returning(Job.id)
    )
    if (await session.execute(stmt)).first() is not None:
        await _refresh(session, job_id)
        return JobStatus.QUEUED
    reason = error or "gave up"
    if await _fail(session, job_id, f"{reason} (after {MAX_ATTEMPTS} attempts)", (JobStatus.RUNNING,)):
        return JobStatus.FAILED
    return None


async def finish_job(
    *,
    session: AsyncSession,
    job_id: uuid.UUID,
    images: Sequence[NewImage],
    grid_storage_key: str | None = None,
    prompts: Sequence[str] | None = None,
) -> bool:
    """Store a running job's images (or a describe job's ``prompts``), mark it done and
    capture its credits.

    Idempotent: finishing a job that is already done changes nothing and returns False (a
    redelivered task must not capture twice or store images twice).

    Raises:
        JobStateError: the job is queued, failed or cancelled (or does not exist).
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(
            status=JobStatus.DONE,
            finished_at=func.now(),
            error=None,
            grid_storage_key=grid_storage_key,
            prompts=list(prompts) if prompts is not None else None,
        )
        .returning(Job.id)
    )
    if (await session.execute(stmt)).first() is None:
        status = await session.scalar(select(Job.status).where(Job.id == job_id))
        if status == JobStatus.DONE:
            return False
        raise JobStateError(job_id, status, "finish")
    await add_images(session=session, job_id=job_id, images=images)
    await capture_credits(session=session, job_id=job_id)
    await _refresh(session, job_id)
    return True


async def fail_job(*, session: AsyncSession, job_id: uuid.UUID, error: str) -> bool:
    """Mark a queued or running job failed and refund its credits.

    Returns:
        True if this call failed it; False if it had already ended (nothing changes).
    """
    return await _fail(session, job_id, error, (JobStatus.QUEUED, JobStatus.RUNNING))


async def cancel_job(*, session: AsyncSession, job_id: uuid.UUID, user_id: int | None = None) -> bool:
    """Cancel a job that is still queued and refund its credits.

    Args:
        user_id: when given, only that user's job is cancelled.

    Returns:
        True if cancelled; False if the job is no longer queued (or not the user's).
    """
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    stmt = stmt.values(status=JobStatus.CANCELLED, finished_at=func.now()).returning(Job.id)
    if (await session.execute(stmt)).first() is None:
        return False
    await release_credits(session=session, job_id=job_id)
    await _refresh(session, job_id)
    return True


async def request_stop(*, session: AsyncSession, job_id: uuid.UUID, user_id: int | None = None) -> bool:
    """Ask a running job to stop at its next step (:func:`finish_cancelled` ends it).

    Returns:
        True if the job is running and now (or already) asked to stop; False otherwise.
    """
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    stmt = stmt.values(cancel_requested_at=func.coalesce(Job.cancel_requested_at, func.now())).returning(Job.id)
    if (await session.execute(stmt)).first() is None:
        return False
    await _refresh(session, job_id)
    return True


def unrendered_refund(cost: int, rendered: float) -> int:
    """Credits given back for a job stopped with ``rendered`` (0..1) of its work done: the
    unrendered share of ``cost``, to the nearest credit (halves in the user's favour)."""
    share = min(max(rendered, 0.0), 1.0)
    return min(cost, math.floor(cost * (1.0 - share) + 0.5))


async def finish_cancelled(*, session: AsyncSession, job_id: uuid.UUID, rendered: float) -> int | None:
    """End a running job its owner stopped: cancelled, the rendered share charged, the rest refunded.

    Args:
        rendered: the share of the job's work done when it stopped (0..1).

    Returns:
        The credits refunded, or None when the job was not running (nothing changes).
    """
    cost = await session.scalar(select(Job.cost).where(Job.id == job_id, Job.status == JobStatus.RUNNING))
    if cost is None:
        return None
    refund = unrendered_refund(cost, rendered)
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(
            status=JobStatus.CANCELLED,
            finished_at=func.now(),
            refunded=refund,
            error=f"stopped by its owner at {min(max(rendered, 0.0), 1.0):.0%}",
        )
        .returning(Job.id)
    )
    if (await session.execute(stmt)).first() is None:
        return None
    await capture_credits(session=session, job_id=job_id)
    if refund > 0:
        await refund_credits(session=session, job_id=job_id, amount=refund)
    await _refresh(session, job_id)
    return refund


async def add_images(*, session: AsyncSession, job_id: uuid.UUID, images: Sequence[NewImage]) -> list[Image]:
    """Store images of a job; an image index that is already stored is left as it was.

    Images of a private job, and NSFW images, are never public, whatever ``public`` says.

    Returns:
        The job's images for the given indexes, in index order.
    """
    if not images:
        return []
    private = await session.scalar(select(Job.private).where(Job.id == job_id))
    if private is None:
        raise JobStateError(job_id, None, "add images to")
    rows = [
        {
            "job_id": job_id,
            "index": img.index,
            "seed": img.seed,
            "storage_key": img.storage_key,
            "width": img.width,
            "height": img.height,
            "sha256": img.sha256,
            "nsfw_score": img.nsfw_score,
            "nsfw": img.nsfw,
            "public": img.public and not img.nsfw and not private,
            "thumbnail_key": img.thumbnail_key,
        }
        for img in images
    ]
    await session.execute(
        pg_insert(Image).values(rows).on_conflict_do_nothing(index_elements=["job_id", "index"])
    )
    stmt = (
        select(Image)
        .where(Image.job_id == job_id, Image.index.in_([img.index for img in images]))
        .order_by(Image.index)
    )
    return list(await session.scalars(stmt))


async def set_result_message(
    *, session: AsyncSession, job_id: uuid.UUID, channel_id: int, message_id: int
) -> bool:
    """Remember the Discord message that shows a job's result.

    Returns:
        True if stored; False if the job already has a result message (a retried delivery
        must not post a second one).
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.result_message_id.is_(None))
        .values(result_channel_id=channel_id, result_message_id=message_id)
        .returning(Job.id)
    )
    stored = (await session.execute(stmt)).first() is not None
    if stored:
        await _refresh(session, job_id)
    return stored


async def notify_job_event(*, session: AsyncSession, job_id: uuid.UUID) -> None:
    """Send ``NOTIFY job_events, '<job_id>'`` (:data:`core.tasks.JOB_EVENTS_CHANNEL`).

    Postgres delivers the notification only when the caller's transaction commits, so the
    bot that LISTENs hears of a finished or failed job exactly when its state is visible.
    Ending a job (finish, fail, cancel, a requeue that fails) already notifies from a
    database trigger; calling this in that same transaction adds nothing, because Postgres
    delivers identical notifications of one transaction once.
    """
    await session.execute(select(func.pg_notify(JOB_EVENTS_CHANNEL, str(job_id))))


async def _fail(
    session: AsyncSession, job_id: uuid.UUID, error: str, from_states: tuple[JobStatus, ...]
) -> bool:
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(from_states))
        .values(status=JobStatus.FAILED, finished_at=func.now(), error=error)
        .returning(Job.id)
    )
    if (await session.execute(stmt)).first() is None:
        return False
    await release_credits(session=session, job_id=job_id)
    await _refresh(session, job_id)
    return True


async def _refresh(session: AsyncSession, job_id: uuid.UUID) -> None:
    # Core UPDATEs above bypass the identity map; reload a Job the session already holds
    # so callers do not read a stale status from it.
    job = session.sync_session.identity_map.get(identity_key(Job, job_id))
    if job is not None:
        await session.refresh(job)
