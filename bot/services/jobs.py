"""A user's jobs: what is queued and running, cancelling, and looking one up to show again."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from bot.services.user_settings import UserSettings
from core.metrics import metrics
from core.spec import Lane
from core.tasks import STOP_KEY_TTL_S, stop_key
from db.models import Job, JobStatus
from db.repositories import (
    active_jobs,
    balance_of,
    cancel_job,
    discord_id_of,
    get_job,
    queue_depth,
    queue_position,
    request_stop,
    upsert_user,
)

log = logging.getLogger(__name__)

MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class ActiveJob:
    """A queued or running job, as ``/queue`` and ``/info`` list it."""

    job_id: uuid.UUID
    prompt: str
    status: JobStatus
    lane: Lane
    model: str
    cost: int
    position: int
    """Place in the queue (1 is next); 0 for a running job."""


@dataclass(frozen=True, slots=True)
class Overview:
    """What ``/info`` shows."""

    balance: int
    settings: UserSettings
    running: tuple[ActiveJob, ...]
    queued: tuple[ActiveJob, ...]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A cancelled job and what it gave back."""

    job_id: uuid.UUID
    prompt: str
    refunded: int
    balance: int
    stopping: bool = False
    """The job was rendering: it stops at its next step, and the unrendered share of its
    credits comes back when it has (``refunded`` is 0 until then)."""


async def user_overview(*, sessions: async_sessionmaker[AsyncSession], discord_user_id: int) -> Overview:
    """The user's balance, defaults and queued and running jobs (oldest first)."""
    async with sessions() as session:
        async with session.begin():
            user = await upsert_user(session=session, discord_id=discord_user_id)
        jobs = await active_jobs(session=session, user_id=user.id, limit=MAX_LISTED)
        active = [
            ActiveJob(
                job_id=job.id,
                prompt=job.prompt,
                status=job.status,
                lane=job.lane,
                model=job.model,
                cost=job.cost,
                position=await queue_position(session=session, job=job)
                if job.status == JobStatus.QUEUED
                else 0,
            )
            for job in jobs
        ]
    return Overview(
        balance=user.balance,
        settings=UserSettings.from_json(user.settings),
        running=tuple(j for j in active if j.status == JobStatus.RUNNING),
        queued=tuple(j for j in active if j.status == JobStatus.QUEUED),
    )


async def cancel_own_job(
    *, sessions: async_sessionmaker[AsyncSession], redis: Any, discord_user_id: int, job_id: uuid.UUID
) -> Cancelled:
    """Cancel one of the user's jobs: a queued one at once with its hold refunded, a running
    one at its next step (the worker refunds the unrendered share, :mod:`gpu_worker.stopping`).

    Args:
        redis: the bot's asyncio Redis client (the stop key tells the worker at once).

    Raises:
        Refused: the job is not the user's, or it has ended.
    """
    async with sessions() as session, session.begin():
        user = await upsert_user(session=session, discord_id=discord_user_id)
        job = await get_job(session=session, job_id=job_id)
        if job is None or job.user_id != user.id:
            raise Refused("That is not one of your jobs.", reason=RefusalReason.NOT_FOUND)
        stopping = False
        if not await cancel_job(session=session, job_id=job_id, user_id=user.id):
            stopping = await request_stop(session=session, job_id=job_id, user_id=user.id)
            if not stopping:
                state = {
                    JobStatus.DONE: "it has finished",
                    JobStatus.FAILED: "it has failed (and was refunded)",
                    JobStatus.CANCELLED: "it was cancelled already",
                }.get(job.status, "it has ended")
                raise Refused(f"That job cannot be cancelled: {state}.", reason=RefusalReason.STATE)
        balance = await balance_of(session=session, user_id=user.id)
    if stopping:
        # After the commit: the durable mark is in Postgres whatever happens to this write.
        try:
            await redis.set(stop_key(str(job_id)), "1", ex=STOP_KEY_TTL_S)
        except Exception:  # the worker still finds the mark if its task is redelivered
            log.warning("could not set the stop key of job %s", job_id, exc_info=True)
    return Cancelled(
        job_id=job_id, prompt=job.prompt, refunded=0 if stopping else job.cost, balance=balance, stopping=stopping
    )


async def own_job(
    *, sessions: async_sessionmaker[AsyncSession], discord_user_id: int, job_id: uuid.UUID
) -> Job:
    """One of the user's jobs with its images (for ``/show``).

    Raises:
        Refused: no such job, or it belongs to someone else.
    """
    async with sessions() as session:
        job = await get_job(session=session, job_id=job_id, with_images=True)
        owner = await discord_id_of(session=session, user_id=job.user_id) if job else None
    if job is None or owner != discord_user_id:
        raise Refused("I found no job of yours with that id.", reason=RefusalReason.NOT_FOUND)
    return job


def parse_job_id(text: str) -> uuid.UUID:
    """A job id as users paste it (with or without dashes, any case).

    Raises:
        Refused: not a job id.
    """
    try:
        return uuid.UUID(text.strip().strip("`"))
    except ValueError:
        raise Refused(
            f"`{text[:60]}` is not a job id; a job id looks like `1b4e28ba-2fa1-11d2-883f-0016d3cca427`.",
            reason=RefusalReason.INPUT,
        ) from None


_DEPTH_LABELS: set[tuple[str, str]] = set()


async def record_queue_depth(sessions: async_sessionmaker[AsyncSession]) -> dict[tuple[str, str], int]:
    """Set the queue-depth metric (:mod:`core.metrics`) from the database: queued jobs by lane
    and model; a lane and model with none left goes back to 0. Returns the counts."""
    async with sessions() as session:
        depth = await queue_depth(session=session)
    gauge = metrics().queue_depth
    for lane, model in _DEPTH_LABELS - depth.keys():
        gauge.labels(lane, model).set(0)
    for (lane, model), count in depth.items():
        gauge.labels(lane, model).set(count)
    _DEPTH_LABELS.update(depth)
    return depth
