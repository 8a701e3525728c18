"""Recovery after crashes: the reconciler that whichever worker is alive runs every few seconds.

What a crash can leave behind, and what :func:`reconcile` does about it:

* the bot died between committing a job and sending its task: the outbox drain
  (:func:`db.repositories.drain_outbox`) sends it (the bot's own drain does the same; whichever process is alive gets there first);
* the broker lost messages (killed between two syncs of its append-only file): queued jobs
  past their grace period, which comes from their model's render time and the jobs ahead
  of them (:func:`db.repositories.overdue_queued_jobs`), are published again;
* a worker died mid-render: its jobs' leases lapse (or name a process of this host that is
  gone), and they are put back in the queue, or failed and refunded after the last attempt.

With the worker's pass every :data:`RECONCILE_EVERY_S` seconds, each of these is repaired
within about 30 s of the surviving (or restarted) process seeing it. Safe to run from
several workers at once: a running job is handled only under its lease, outbox rows are
locked while they are sent, and republishing is marked in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import JobStatus
from db.repositories import (
    OUTBOX_GRACE,
    drain_outbox,
    notify_job_event,
    overdue_queued_jobs,
    requeue_job,
    stale_running_jobs,
)
from gpu_worker.leases import LeaseBook
from gpu_worker.service import Publish, publish_quietly

logger = logging.getLogger(__name__)

RECONCILE_EVERY_S = 5.0
"""Seconds between two passes of a worker's reconciler."""
RUNNING_GRACE = timedelta(seconds=5)
"""The reconciler leaves running jobs younger than this alone (their lease decides the rest)."""


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one :func:`reconcile` pass did (job ids)."""

    republished: tuple[uuid.UUID, ...] = ()
    """Queued jobs whose task was published again (or for the first time, from the outbox)."""
    requeued: tuple[uuid.UUID, ...] = ()
    """Running jobs of dead workers put back in the queue (and published)."""
    failed: tuple[uuid.UUID, ...] = ()
    """Running jobs of dead workers that had no attempt left (failed and refunded)."""


async def reconcile(
    *,
    sessions: async_sessionmaker[AsyncSession],
    leases: LeaseBook,
    publish: Publish,
    running_after: timedelta = RUNNING_GRACE,
    outbox_after: timedelta = OUTBOX_GRACE,
    limit: int = 100,
) -> ReconcileReport:
    """One pass over what crashes leave behind (see the module docstring).

    Args:
        running_after: ignore running jobs claimed less than this long ago.
        outbox_after: send outbox rows unpublished for at least this long.
        limit: jobs handled per kind and pass.
    """
    requeued: list[uuid.UUID] = []
    failed: list[uuid.UUID] = []

    async with sessions() as session:
        stale = [
            (j.id, j.lane.value, j.model)
            for j in await stale_running_jobs(session=session, older_than=running_after, limit=limit)
        ]
    for job_id, lane, model in stale:
        # Taking the lease proves that no live worker renders the job, and keeps a
        # redelivered task from taking it over while we re-queue it.
        if not await asyncio.to_thread(leases.acquire, job_id):
            continue
        try:
            async with sessions() as session, session.begin():
                status = await requeue_job(
                    session=session, job_id=job_id, error="the worker rendering it stopped"
                )
                if status is JobStatus.FAILED:
                    await notify_job_event(session=session, job_id=job_id)
        finally:
            await asyncio.to_thread(leases.release, job_id)
        if status is JobStatus.QUEUED:
            await asyncio.to_thread(publish_quietly, publish, job_id, lane, model)
            requeued.append(job_id)
        elif status is JobStatus.FAILED:
            failed.append(job_id)

    republished = await drain_outbox(sessions=sessions, send=publish, older_than=outbox_after, limit=limit)

    async with sessions() as session:
        overdue = await overdue_queued_jobs(session=session, limit=limit)
    for job in overdue:
        if job.id in republished or job.id in requeued:
            continue
        ttl = max(1, int(job.grace.total_seconds()))
        if await asyncio.to_thread(leases.mark_republished, job.id, ttl):
            await asyncio.to_thread(publish_quietly, publish, job.id, job.lane.value, job.model)
            republished.append(job.id)

    report = ReconcileReport(tuple(republished), tuple(requeued), tuple(failed))
    if republished or requeued or failed:
        logger.info(
            "reconciler: %d republished, %d requeued, %d failed", len(republished), len(requeued), len(failed)
        )
    return report
