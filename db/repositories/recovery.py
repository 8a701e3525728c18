"""The reconciler's queries: jobs whose broker message was lost, and jobs whose worker died.

A queued job's message can be lost with the broker (a crash between two disk syncs) or
never sent (the bot died before publishing). Nothing in the broker says so; the database
does, by time: :func:`overdue_queued_jobs` gives each queued job a grace period derived
from how long its model's renders take and how many of its jobs are ahead of it, and
reports the jobs that waited longer. A job that later jobs of its model and lane overtook
is overdue sooner (its message is not in the queue any more, or a worker holds it). Sending
an overdue job again is harmless: the worker's claim lets one message through.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.spec import Lane
from core.tasks import MAX_ATTEMPTS, RENDER_TASK
from db.models import Job, JobStatus
from db.repositories.queue import mark_outbox_published, unpublished_outbox

log = logging.getLogger(__name__)

MIN_GRACE = timedelta(seconds=10)
"""No queued job is sent again before it waited this long (the broker delivers in milliseconds)."""
MAX_GRACE = timedelta(minutes=10)
DEFAULT_RENDER_S = 30.0
"""Assumed render time of a model with no finished job in the last day."""
OUTBOX_GRACE = timedelta(seconds=5)
"""Outbox rows younger than this are left to the process that wrote them (it sends right
after committing)."""
GRACE_FACTOR = 1.5
"""Slack over the expected wait, for renders slower than the median."""


@dataclass(frozen=True, slots=True)
class OverdueJob:
    """A queued job that waited longer than its grace period."""

    id: uuid.UUID
    lane: Lane
    model: str
    grace: timedelta


async def render_seconds_by_model(*, session: AsyncSession, since: timedelta = timedelta(days=1)) -> dict[str, float]:
    """The median render time (claim to done) of each model's recent jobs, in seconds."""
    rows = (
        await session.execute(
            select(Job.model, func.extract("epoch", Job.finished_at - Job.started_at))
            .where(
                Job.status == JobStatus.DONE,
                Job.finished_at > func.now() - since,
                Job.started_at.is_not(None),
            )
            .order_by(Job.finished_at.desc())
            .limit(2000)
        )
    ).all()
    found: dict[str, list[float]] = defaultdict(list)
    for model, seconds in rows:
        if seconds is not None and len(found[model]) < 50:
            found[model].append(float(seconds))
    return {model: statistics.median(values) for model, values in found.items() if values}


async def overdue_queued_jobs(*, session: AsyncSession, limit: int = 100) -> list[OverdueJob]:
    """Queued jobs that waited past their grace period (module docstring), oldest first.

    grace = clamp(MIN_GRACE + GRACE_FACTOR x (jobs of the model ahead + 1) x median render
    time, MIN_GRACE, MAX_GRACE); for a job that a later job of its model and lane overtook,
    the count of jobs ahead is taken as zero.
    """
    now = await session.scalar(select(func.now()))
    assert isinstance(now, datetime)
    queued = (
        await session.execute(
            select(Job.id, Job.lane, Job.model, Job.queued_at)
            .where(Job.status == JobStatus.QUEUED, Job.attempts < MAX_ATTEMPTS)
            .order_by(Job.queued_at, Job.id)
            .limit(5000)
        )
    ).all()
    if not queued:
        return []
    # The latest queue time of a job already claimed, per model and lane: anything queued
    # before it and still waiting was overtaken.
    overtaken_before = {
        (model, lane): queued_at
        for model, lane, queued_at in (
            await session.execute(
                select(Job.model, Job.lane, func.max(Job.queued_at))
                .where(Job.started_at.is_not(None), Job.queued_at > now - MAX_GRACE)
                .group_by(Job.model, Job.lane)
            )
        ).all()
    }
    seconds = await render_seconds_by_model(session=session)
    ahead: dict[str, int] = defaultdict(int)
    overdue: list[OverdueJob] = []
    for job_id, lane, model, queued_at in queued:
        position = ahead[model]
        ahead[model] += 1
        latest = overtaken_before.get((model, lane))
        if latest is not None and queued_at < latest:
            position = 0
        expected = GRACE_FACTOR * (position + 1) * seconds.get(model, DEFAULT_RENDER_S)
        grace = min(MAX_GRACE, max(MIN_GRACE, MIN_GRACE + timedelta(seconds=expected)))
        if now - queued_at > grace:
            overdue.append(OverdueJob(job_id, lane, model, grace))
            if len(overdue) >= limit:
                break
    return overdue


async def queued_jobs_to_republish(
    *, session: AsyncSession, older_than: timedelta, limit: int = 100
) -> list[Job]:
    """Jobs queued for longer than ``older_than`` that can still run, oldest first."""
    stmt = (
        select(Job)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.attempts < MAX_ATTEMPTS,
            Job.queued_at < func.now() - older_than,
        )
        .order_by(Job.queued_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def stale_running_jobs(*, session: AsyncSession, older_than: timedelta, limit: int = 100) -> list[Job]:
    """Jobs running for longer than ``older_than``, oldest first (the reconciler then asks
    their lease whether a live worker still renders them)."""
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.RUNNING, Job.started_at < func.now() - older_than)
        .order_by(Job.started_at)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def drain_outbox(
    *,
    sessions: async_sessionmaker[AsyncSession],
    send: Callable[[uuid.UUID, str, str], object],
    older_than: timedelta = OUTBOX_GRACE,
    limit: int = 100,
) -> list[uuid.UUID]:
    """Send the render tasks of outbox rows left unpublished for ``older_than``; their job ids.

    ``send(job_id, lane, model)`` publishes one task (blocking; it runs in a thread). The bot
    and every worker's reconciler drain with it, so the outbox empties while any of them is
    alive. The rows are locked while they are sent (``SKIP LOCKED``), so the bot's own drain and
    other workers never send one row at the same time; rows of jobs that are no longer
    queued are marked done without sending.
    """
    sent: list[uuid.UUID] = []
    async with sessions() as session, session.begin():
        rows = await unpublished_outbox(session=session, older_than=older_than, limit=limit)
        if not rows:
            return sent
        jobs = {
            job.id: job
            for job in await session.scalars(select(Job).where(Job.id.in_([r.job_id for r in rows])))
        }
        done: list[int] = []
        for row in rows:
            job = jobs.get(row.job_id)
            if row.task_name != RENDER_TASK or job is None:
                continue
            if job.status is JobStatus.QUEUED:
                try:
                    await asyncio.to_thread(send, job.id, job.lane.value, job.model)
                except Exception:
                    log.exception("could not send job %s from the outbox; the next pass tries again", job.id)
                    continue
                sent.append(job.id)
            done.append(row.id)
        await mark_outbox_published(session=session, outbox_ids=done)
    if sent:
        log.info("outbox: sent %d render task(s) nobody had published", len(sent))
    return sent
