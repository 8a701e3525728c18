"""How the end of a render is recorded: one transaction per job (:mod:`gpu_worker.service`
renders one job, :mod:`gpu_worker.batching` several in one call; both end here).

A done job gets its image rows, its credits captured and ``NOTIFY job_events`` at once; a
failed attempt is re-queued (and its task published again by the caller) until the attempt
cap, or failed and refunded at once when no attempt can cure it (:mod:`gpu_worker.failures`).
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.metrics import metrics
from db.errors import JobStateError
from db.models import JobStatus
from db.repositories import NewImage, fail_job, finish_job, notify_job_event, requeue_job
from db.repositories.trained_loras import mark_trained
from gpu_worker.failures import FailureKind, classify_failure, free_gpu_memory, user_reason
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.search_index import index_prompt
from gpu_worker.stopping import JobStopped, record_stopped

logger = logging.getLogger(__name__)


class RenderOutcome(enum.StrEnum):
    """How one render task ended."""

    DONE = "done"
    """The job is done: images stored, credits captured."""
    FAILED = "failed"
    """The job failed for good; its credits were refunded."""
    RETRYING = "retrying"
    """The attempt failed; the job is queued again and its task published."""
    RENDERED = "rendered"
    """Its images are drawn; the finisher scores, stores and records them (:mod:`gpu_worker.finishing`)."""
    SKIPPED = "skipped"
    """Nothing to do: the job ended already, another worker renders it, or it does not exist."""
    CANCELLED = "cancelled"
    """Its owner stopped it (:mod:`gpu_worker.stopping`); the unrendered share was refunded."""


Publish = Callable[[uuid.UUID, str, str], None]
"""Sends ``render(job_id)`` to the queue of ``(job_id, lane, model)``."""


async def record_done(
    sessions: async_sessionmaker[AsyncSession], job: ClaimedJob, result: RenderResult
) -> RenderOutcome:
    """Images, done, capture and the notification: one transaction."""
    images = [
        NewImage(
            index=img.index,
            seed=img.seed,
            storage_key=img.storage_key,
            width=img.width,
            height=img.height,
            sha256=img.sha256,
            nsfw_score=img.nsfw_score,
            nsfw=img.nsfw,
            public=not job.private,
            thumbnail_key=img.thumbnail_key,
        )
        for img in result.images
    ]
    try:
        async with sessions() as session, session.begin():
            finished = await finish_job(
                session=session,
                job_id=job.id,
                images=images,
                grid_storage_key=result.grid_storage_key,
                prompts=result.prompts,
            )
            if finished and result.lora is not None:
                lora = result.lora
                await mark_trained(session=session, job_id=job.id, storage_key=lora.storage_key, sha256=lora.sha256,
                                   size_bytes=lora.size_bytes)
            if finished:
                await notify_job_event(session=session, job_id=job.id)
    except JobStateError as exc:
        # Someone ended the job while we rendered (the reconciler after a long stall): the
        # state they recorded stands, with its credits settled.
        logger.warning("job %s: rendered, but %s", job.id, exc)
        return RenderOutcome.SKIPPED
    return RenderOutcome.DONE if finished else RenderOutcome.SKIPPED


async def record_failure(
    sessions: async_sessionmaker[AsyncSession], job: ClaimedJob, exc: BaseException
) -> RenderOutcome:
    """Re-queue the job for another attempt, or fail and refund it, after ``exc``."""
    kind = classify_failure(exc)
    message = user_reason(kind, exc, model=job.model)
    metrics().failures.labels(kind.name.lower()).inc()
    if kind is FailureKind.OUT_OF_MEMORY:
        free_gpu_memory()
    # The operator's detail (the exception itself) goes to the log; the user reads ``message``.
    if kind is FailureKind.TRANSIENT:
        logger.warning("job %s attempt %d failed: %s", job.id, job.attempts, describe_error(exc), exc_info=exc)
    elif kind is FailureKind.MODEL_BROKEN:
        logger.error("job %s failed for good, model %r does not load: %s", job.id, job.model, describe_error(exc))
    else:
        logger.warning("job %s failed: %s", job.id, describe_error(exc) if kind is FailureKind.REJECTED else message)
    async with sessions() as session, session.begin():
        if kind is FailureKind.TRANSIENT:
            status = await requeue_job(session=session, job_id=job.id, error=message)
            if status is JobStatus.QUEUED:
                return RenderOutcome.RETRYING
            ended = status is JobStatus.FAILED
        else:
            ended = await fail_job(session=session, job_id=job.id, error=message)
        if ended:
            await notify_job_event(session=session, job_id=job.id)
    return RenderOutcome.FAILED if ended else RenderOutcome.SKIPPED


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def publish_quietly(publish: Publish, job_id: uuid.UUID, lane: str, model: str) -> None:
    try:
        publish(job_id, lane, model)
    except Exception:
        # The job is queued in the database: the reconciler publishes it again later.
        logger.exception("could not publish job %s again; the reconciler will", job_id)


def record_end(runtime: Any, job: ClaimedJob, result: RenderResult | BaseException, started: float) -> RenderOutcome:
    """Record how one render of ``job`` ended, whether it rendered alone or in a call with others:
    its images (:func:`record_done`, then its prompt in the search index), its owner's stop
    (:func:`gpu_worker.stopping.record_stopped`) or its failure (:func:`record_failure`).

    Args:
        runtime: the process's :class:`gpu_worker.service.WorkerRuntime` (its loop and sessions).
        result: what the renderer returned for the job, or what it raised.
        started: ``time.perf_counter()`` when the render began (for the log line).
    """
    if isinstance(result, JobStopped):
        runtime.run(record_stopped(runtime.sessions, job.id, result.rendered))
        return RenderOutcome.CANCELLED
    if isinstance(result, BaseException):
        return runtime.run(record_failure(runtime.sessions, job, result))
    recording = time.perf_counter()
    outcome = runtime.run(record_done(runtime.sessions, job, result))
    recorded = time.perf_counter()
    if outcome is RenderOutcome.DONE:
        runtime.run(index_prompt(runtime.sessions, job.id, job.spec.prompt))
    # "record" ends with the notification (the member's wait); "index" comes after it.
    phases = {**result.timings, "record": recorded - recording, "index": time.perf_counter() - recorded}
    logger.info(
        "job %s %s in %.2f s (%s)", job.id, outcome.value, time.perf_counter() - started,
        ", ".join(f"{name} {seconds:.3f} s" for name, seconds in phases.items()),
    )
    return outcome
