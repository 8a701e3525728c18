"""What a GPU worker does with a job, as plain functions; :mod:`gpu_worker.tasks` only wraps them.

One render (:func:`render_job`):

1. choose the job (the message's, or a fairer one: :mod:`gpu_worker.fair_share`) and take
   its lease (:mod:`gpu_worker.leases`): a duplicate task for a job another process renders
   is dropped at once;
2. claim the job in Postgres (``queued`` -> ``running``, one more attempt); a ``running``
   job whose lease we could take belongs to a worker that died, so it is put back and
   claimed again in the same transaction;
3. render it (:mod:`gpu_worker.rendering`: operation, moderation, PNGs in the store), with
   the lease kept alive by a heartbeat;
4. one transaction: image rows, job done, credits captured, ``NOTIFY job_events``.

When the render raises, the job is re-queued and its task published again until the attempt
cap (:data:`core.tasks.MAX_ATTEMPTS`, counted in the database so redeliveries count too),
then failed and refunded. Failures no attempt can cure (out of GPU memory, the soft time
limit, a job that can never run, a model that does not load: :mod:`gpu_worker.failures`)
fail and refund at once. Either way the worker goes on serving.

:func:`reconcile` repairs what a lost broker message or a dead worker leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.metrics import metrics
from core.spec import JobKind, JobSpec
from core.tasks import MAX_ATTEMPTS
from db.models import Job, JobStatus
from db.repositories import claim_job, fail_job, get_job, notify_job_event, requeue_job
from db.repositories.trained_loras import pictures_of, training_request
from db.repositories.web_requests import mask_png
from gpu_worker.batching import gather_companions, render_together
from gpu_worker.fair_share import choose
from gpu_worker.finishing import Finisher
from gpu_worker.leases import LeaseBook
from gpu_worker.recording import Publish, RenderOutcome, publish_quietly, record_end
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.stopping import JobStopped
from gpu_worker.storing import Drawn
from gpu_worker.telemetry import count_render
from gpu_worker.test_faults import inject_test_fault

__all__ = ["Publish", "RenderOutcome", "Renderer", "WorkerRuntime", "publish_quietly", "render_job"]

logger = logging.getLogger(__name__)


T = TypeVar("T")


class Renderer(Protocol):
    """Turns a claimed job into stored images (:class:`gpu_worker.rendering.JobRenderer`)."""

    def __call__(self, job: ClaimedJob) -> RenderResult:  # pragma: no cover - protocol
        ...


@dataclass
class WorkerRuntime:
    """What a worker process keeps between tasks.

    asyncpg connections belong to the event loop that opened them, so each process has one
    loop of its own (:meth:`run`) and its engine's connections live on it.
    """

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    leases: LeaseBook
    publish: Publish
    renderer: Renderer
    pid: int = field(default_factory=os.getpid)
    finisher: Finisher | None = None
    """Finishes jobs behind the next render (:mod:`gpu_worker.finishing`); None: one at a time."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's loop."""
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        """Finish what was handed over, then close the database connections and the loop."""
        try:
            if self.finisher is not None:
                self.finisher.close()
            self.run(self.engine.dispose())
        finally:
            self.loop.close()


# --------------------------------------------------------------------------- rendering


def render_job(runtime: WorkerRuntime, job_id: uuid.UUID | str) -> RenderOutcome:
    """Render one job from claim to its recorded end (see the module docstring).

    Args:
        runtime: this process's runtime.
        job_id: the job's id (the task's only argument).

    Returns:
        How it ended; errors of the render itself never escape (they end in a retry or a
        failure). Database or broker errors do escape: the job then stays as it was and the
        reconciler picks it up. With a finisher (:mod:`gpu_worker.finishing`) a job whose
        images are drawn returns :attr:`RenderOutcome.RENDERED`: the finisher scores, stores
        and records it, then drops its lease, while this process renders the next.
    """
    named, leases = uuid.UUID(str(job_id)), runtime.leases
    claim = lambda fairer: runtime.run(_claim(runtime.sessions, fairer, queued_only=True))  # noqa: E731
    chosen = choose(
        leases=leases, run=runtime.run, sessions=runtime.sessions, named=named, claim=claim,
        publish=lambda job_id, lane, model: publish_quietly(runtime.publish, job_id, lane, model),
    )
    if chosen is None:
        logger.info("job %s is being rendered by %s; dropping this duplicate task", named, leases.holder(named))
        return RenderOutcome.SKIPPED
    job_uuid, job = chosen
    end = _End(runtime, job_uuid)
    held = contextlib.ExitStack()
    held.callback(end)  # closed last: after the heartbeat stops
    try:
        job = job or runtime.run(_claim(runtime.sessions, job_uuid))
        if job is None:
            return RenderOutcome.SKIPPED
        end.job, end.started = job, time.perf_counter()
        metrics().wait_seconds.labels(job.model, job.lane.value).observe(job.waited_s)
        logger.info("job %s: %s attempt %d/%d", job.id, job.kind.value, job.attempts, MAX_ATTEMPTS)
        held.enter_context(leases.heartbeat(job_uuid))
        companions = [] if job.stop_requested else gather_companions(runtime, job, claim)
        if companions:
            end.outcome, retry = render_together(runtime, job, companions)
            end.republish = job if retry else None
            return end.outcome
        result: Drawn | RenderResult | BaseException
        try:
            if job.stop_requested:
                raise JobStopped(0.0)
            inject_test_fault(job)
            result = _render(runtime, job)
        except Exception as exc:  # its end (a stop, a failure) is recorded like any other
            result = exc
        if isinstance(result, Drawn) and runtime.finisher is not None:
            finished, images, renderer = job, result, runtime.renderer

            def finish(context: Any) -> None:
                try:
                    kept: RenderResult | BaseException = renderer.keep(images)  # type: ignore[attr-defined]
                except Exception as exc:
                    kept = exc
                end.settle(record_end(context, finished, kept, end.started))

            runtime.finisher.submit(job, finish, held.pop_all())
            return RenderOutcome.RENDERED
        assert not isinstance(result, Drawn)  # only renders for a finisher stop at their images
        end.settle(record_end(runtime, job, result, end.started))
        return end.outcome
    finally:
        held.close()


def _render(runtime: WorkerRuntime, job: ClaimedJob) -> Drawn | RenderResult:
    """The job's images to hand to the finisher, or its whole result (no finisher, a renderer
    that does not split, a job that stores no images or trained a LoRA)."""
    draw = getattr(runtime.renderer, "draw", None) if runtime.finisher is not None else None
    if draw is None:
        return runtime.renderer(job)
    drawn = draw(job)
    if isinstance(drawn, Drawn) and drawn.done.lora is not None:  # its file lives in the render's own folder
        return runtime.renderer.keep(drawn)  # type: ignore[attr-defined, no-any-return]
    return drawn  # type: ignore[no-any-return]


@dataclass
class _End:
    """What a render owes once its job's end is recorded: its count in the metrics, its lease
    dropped, and its task published again when it is to be retried (in that order: the next
    worker must find the lease free)."""

    runtime: WorkerRuntime
    job_uuid: uuid.UUID
    job: ClaimedJob | None = None
    started: float = field(default_factory=time.perf_counter)
    outcome: RenderOutcome = RenderOutcome.SKIPPED
    republish: ClaimedJob | None = None

    def settle(self, outcome: RenderOutcome) -> None:
        """Note how the job ended (a retry's task is published once the lease is dropped)."""
        self.outcome = outcome
        self.republish = self.job if outcome is RenderOutcome.RETRYING else None

    def __call__(self) -> None:
        if self.job is not None:
            count_render(self.runtime.renderer, self.job, self.outcome.value, time.perf_counter() - self.started)
        self.runtime.leases.release(self.job_uuid)
        if self.republish is not None:
            job = self.republish
            publish_quietly(self.runtime.publish, job.id, job.lane.value, job.model)


async def _claim(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, *, queued_only: bool = False
) -> ClaimedJob | None:
    """Claim the job (we hold its lease); None when there is nothing to render (``queued_only``:
    when it is not queued, and nothing else is done about it)."""
    async with sessions() as session, session.begin():
        job = await claim_job(session=session, job_id=job_id)
        if job is None and queued_only:
            return None
        if job is None:
            current = await get_job(session=session, job_id=job_id)
            if current is None:
                logger.warning("job %s does not exist; dropping its task", job_id)
                return None
            if current.status is JobStatus.RUNNING:
                # Running, yet its lease was free: the worker that claimed it died.
                status = await requeue_job(
                    session=session, job_id=job_id, error="the worker rendering it stopped"
                )
                if status is JobStatus.FAILED:
                    await notify_job_event(session=session, job_id=job_id)
                    logger.warning("job %s: its worker died on the last attempt; failed and refunded", job_id)
                    return None
                job = await claim_job(session=session, job_id=job_id)
                if job is None:  # pragma: no cover - the row is locked by our requeue
                    return None
                logger.warning("job %s: took over from a worker that died (attempt %d)", job_id, job.attempts)
            elif current.status is JobStatus.QUEUED:
                # Queued with no attempt left (only a manual change gets here): end it properly.
                await fail_job(session=session, job_id=job_id, error=f"gave up after {MAX_ATTEMPTS} attempts")
                await notify_job_event(session=session, job_id=job_id)
                return None
            else:
                logger.info("job %s is %s already; dropping this task", job_id, current.status.value)
                return None
        training = await training_request(session=session, job_id=job.id) if job.kind is JobKind.TRAIN else None
        pictures = tuple(await pictures_of(session=session, job_id=job.id)) if training else ()
        source_keys = await _source_keys(session, job)
        spec = JobSpec.from_dict(job.params)
        mask = await mask_png(session=session, mask_id=spec.mask_id) if spec.mask_id else None
        return ClaimedJob(
            id=job.id,
            kind=job.kind,
            variant=job.variant,
            spec=spec,
            model=job.model,
            lane=job.lane,
            seed=job.seed,
            attempts=job.attempts,
            private=job.private,
            parent_id=job.parent_id,
            parent_index=job.parent_index,
            source_keys=source_keys,
            stop_requested=job.cancel_requested_at is not None,
            waited_s=max(0.0, (job.started_at - job.queued_at).total_seconds()) if job.started_at else 0.0,
            mask=mask,
            training=training,
            training_pictures=pictures,
        )


async def _source_keys(session: AsyncSession, job: Job) -> tuple[str, ...]:
    """Storage keys of the image a job starts from (its parent's image at ``parent_index``)."""
    if job.parent_id is None:
        return ()
    parent = await get_job(session=session, job_id=job.parent_id, with_images=True)
    if parent is None:
        return ()
    if job.parent_index is None:
        return tuple(img.storage_key for img in parent.images)
    return tuple(img.storage_key for img in parent.images if img.index == job.parent_index)


# --------------------------------------------------------------------------- reconciler


