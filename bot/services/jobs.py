"""A user's jobs: what is queued and running, cancelling, and looking one up to show again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from bot.services.user_settings import UserSettings
from core.spec import Lane
from db.models import Job, JobStatus
from db.repositories import (
    active_jobs,
    balance_of,
    cancel_job,
    discord_id_of,
    get_job,
    queue_position,
    upsert_user,
)

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


async def cancel_queued_job(
    *, sessions: async_sessionmaker[AsyncSession], discord_user_id: int, job_id: uuid.UUID
) -> Cancelled:
    """Cancel one of the user's queued jobs and refund its hold.

    Raises:
        Refused: the job is not the user's, or it is no longer queued.
    """
    async with sessions() as session, session.begin():
        user = await upsert_user(session=session, discord_id=discord_user_id)
        job = await get_job(session=session, job_id=job_id)
        if job is None or job.user_id != user.id:
            raise Refused("That is not one of your jobs.", reason=RefusalReason.NOT_FOUND)
        if not await cancel_job(session=session, job_id=job_id, user_id=user.id):
            state = {
                JobStatus.RUNNING: "it is already rendering",
                JobStatus.DONE: "it has finished",
                JobStatus.FAILED: "it has failed (and was refunded)",
                JobStatus.CANCELLED: "it was cancelled already",
            }.get(job.status, "it is no longer queued")
            raise Refused(f"That job cannot be cancelled: {state}.", reason=RefusalReason.STATE)
        balance = await balance_of(session=session, user_id=user.id)
    return Cancelled(job_id=job_id, prompt=job.prompt, refunded=job.cost, balance=balance)


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
