"""Cross-job batching in the worker: the jobs that render in one pipeline call with the one
a message brought, and how each of them ends.

After :mod:`gpu_worker.service` claims a job whose model batches (``batch_jobs`` > 1 in
``models.toml``, :class:`core.models.SpeedOptions`) and whose recipe can share a call
(:func:`core.batching.batch_key`), :func:`gather_companions` takes up to ``batch_jobs - 1``
queued jobs of the same model, lane and key (:func:`db.repositories.batch_companions`: each
member's oldest first), each with its lease taken and claimed in Postgres as if its own
message had brought it. When fewer are queued, it looks again until the lead job has waited
``batch_window_ms`` since it was queued; a job that waited longer in the queue (the GPU was
busy) waits no more. The companions' own messages find their jobs taken and are dropped,
as any duplicate is.

:func:`render_together` renders them (:meth:`gpu_worker.rendering.JobRenderer.render_batch`)
and records each job on its own, exactly as a job rendered alone is recorded: its images,
done and captured; its owner's stop (the rendered share charged); its failure (retried or
refunded). A call that fails as a batch is rendered again job by job before anything is
recorded as failed, so that batching never fails a job that would have rendered alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from core.batching import batch_key
from core.metrics import metrics
from core.tasks import MAX_ATTEMPTS
from db.repositories import batch_companions
from gpu_worker.recording import RenderOutcome, publish_quietly, record_end
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.stopping import JobStopped
from gpu_worker.telemetry import count_render
from gpu_worker.test_faults import inject_test_fault

logger = logging.getLogger(__name__)

POLL_S = 0.05
"""How often the queue is looked at again while a job waits for companions."""


def batch_limits(renderer: Any, job: ClaimedJob) -> tuple[int, float]:
    """``(most jobs in the call, seconds the job may wait for them)`` for ``job``; ``(1, 0)``
    when it renders alone (its recipe cannot share a call, its model does not batch, or the
    renderer cannot render batches)."""
    if not hasattr(renderer, "render_batch") or batch_key(job.kind, job.variant, job.spec) is None:
        return 1, 0.0
    try:
        speed = renderer.catalog.get(job.model).speed
    except (AttributeError, KeyError):
        return 1, 0.0
    return speed.batch_jobs, speed.batch_window_ms / 1000.0


def gather_companions(runtime: Any, job: ClaimedJob, claim: Callable[[uuid.UUID], ClaimedJob | None]) -> list[ClaimedJob]:
    """Queued jobs to render in one call with ``job``, each leased and claimed (see the
    module docstring); empty when ``job`` renders alone.

    Args:
        runtime: the process's :class:`gpu_worker.service.WorkerRuntime`.
        job: the claimed job the message brought.
        claim: claims a queued job whose lease the caller holds (None: it is no longer queued).
    """
    most, window = batch_limits(runtime.renderer, job)
    if most <= 1:
        return []
    deadline = time.monotonic() + max(0.0, window - job.waited_s)
    found: list[ClaimedJob] = []
    while True:
        ids = runtime.run(_companions(runtime.sessions, job.id, most - 1 - len(found)))
        for job_id in ids:
            if not runtime.leases.acquire(job_id):
                continue
            claimed = claim(job_id)
            if claimed is None:
                runtime.leases.release(job_id)
            else:
                found.append(claimed)
        remaining = deadline - time.monotonic()
        if len(found) >= most - 1 or remaining <= 0:
            return found
        time.sleep(min(POLL_S, remaining))


async def _companions(sessions: Any, job_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    async with sessions() as session:
        return await batch_companions(session=session, job_id=job_id, limit=limit)


def render_together(runtime: Any, lead: ClaimedJob, companions: list[ClaimedJob]) -> tuple[RenderOutcome, bool]:
    """Render ``lead`` and its companions in one call and record each job's end.

    The caller holds the lead's lease and heartbeat and releases it; the companions' leases
    are kept alive here and released, and a companion to retry is published again.

    Returns:
        The lead's outcome, and whether its task is to be published again (a retry).
    """
    jobs = [lead, *companions]
    outcomes: dict[uuid.UUID, RenderOutcome] = {}
    started = time.perf_counter()
    try:
        with ExitStack() as beats:
            for job in companions:
                beats.enter_context(runtime.leases.heartbeat(job.id))
                metrics().wait_seconds.labels(job.model, job.lane.value).observe(job.waited_s)
            ready = []
            for job in jobs:
                logger.info("job %s: %s attempt %d/%d, in one call with %d other job(s)", job.id,
                            job.kind.value, job.attempts, MAX_ATTEMPTS, len(jobs) - 1)
                try:
                    if job.stop_requested:
                        raise JobStopped(0.0)
                    inject_test_fault(job)
                except Exception as exc:  # its end, recorded as a render's would be
                    outcomes[job.id] = record_end(runtime, job, exc, started)
                    continue
                ready.append(job)
            for job, result in zip(ready, _render(runtime, ready), strict=True):
                outcomes[job.id] = record_end(runtime, job, result, started)
        return outcomes[lead.id], outcomes[lead.id] is RenderOutcome.RETRYING
    finally:
        for job in companions:
            outcome = outcomes.get(job.id, RenderOutcome.SKIPPED)
            count_render(runtime.renderer, job, outcome.value, time.perf_counter() - started)
            runtime.leases.release(job.id)
            if outcome is RenderOutcome.RETRYING:
                publish_quietly(runtime.publish, job.id, job.lane.value, job.model)


def _render(runtime: Any, jobs: list[ClaimedJob]) -> list[RenderResult | BaseException]:
    """Each job's result: from one call, or, when the call as a whole failed, from one call each."""
    if not jobs:
        return []
    try:
        return list(runtime.renderer.render_batch(jobs))
    except Exception as exc:
        if len(jobs) == 1:
            return [exc]
        logger.warning("a call of %d jobs failed (%s); rendering them one by one", len(jobs), type(exc).__name__)
    results: list[RenderResult | BaseException] = []
    for job in jobs:
        try:
            results.append(runtime.renderer(job))
        except Exception as exc:
            results.append(exc)
    return results
