"""The GPU worker's Celery tasks: thin wrappers that take ids and call :mod:`gpu_worker.service`.

* ``render(job_id)`` (:data:`core.tasks.RENDER_TASK`) renders one job from claim to its
  recorded end. ``acks_late`` with ``reject_on_worker_lost``: a task whose process died is
  delivered again, and the job's lease and the attempt count in Postgres decide what
  happens then (:func:`gpu_worker.service.render_job`).
* ``reconcile()`` (:data:`core.tasks.RECONCILE_TASK`) runs one reconciler pass on demand;
  every worker also runs one periodically in its main process (:mod:`gpu_worker.cli`).

A task's work ends with the transaction that records the job done or failed and sends
``NOTIFY job_events`` (see :mod:`core.tasks`): delivery to Discord is the bot's, so the GPU
never waits on Discord.

Each pool process builds its runtime when it starts (:func:`get_runtime`), after the
pool forked it: the event loop and database connections it owns, and the renderer whose
pipeline cache holds the models. It imports torch and diffusers and loads the worker's first
model before the worker says it is ready (:mod:`gpu_worker.readiness`); other models load
the first time a job needs them. Nothing heavy happens in the parent process, which keeps
CUDA out of the forking parent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery, Task, shared_task
from celery.signals import worker_process_init, worker_process_shutdown

from core.settings import Settings, get_settings
from core.tasks import RECONCILE_TASK, RENDER_TASK, render_queue
from db.session import create_engine, create_session_factory
from gpu_worker import finishing
from gpu_worker.finishing import Finisher
from gpu_worker.leases import LeaseBook
from gpu_worker.recovery import reconcile
from gpu_worker.service import Publish, Renderer, WorkerRuntime, render_job

logger = logging.getLogger(__name__)

_runtime: WorkerRuntime | None = None


def make_publisher(app: Celery) -> Publish:
    """A :data:`~gpu_worker.service.Publish` that sends ``render(job_id)`` through ``app``."""

    def publish(job_id: uuid.UUID, lane: str, model: str) -> None:
        app.send_task(RENDER_TASK, args=[str(job_id)], queue=render_queue(lane, model))

    return publish


def redis_url_of(settings: Settings) -> str:
    """The Redis that carries leases and progress: ``REDIS_URL``, else a Redis broker URL.

    Raises:
        SettingsError: neither is set (``imaginarium worker`` sets both before the pool starts).
    """
    broker = settings.effective_broker_url
    if settings.redis_url:
        return settings.redis_url
    if broker and broker.startswith(("redis://", "rediss://")):
        return broker
    return str(settings.require("redis_url"))


def build_renderer(settings: Settings, redis_client: redis.Redis) -> Renderer:
    """The real renderer (imports torch and diffusers: call it in a pool process only), or
    the simulated GPU when the worker was started with one (:mod:`gpu_worker.simulated`)."""
    from gpu_worker.simulated import SimulatedRenderer, simulated_seconds

    seconds = simulated_seconds()
    if seconds is not None:
        from gpu_worker.store import open_store

        logger.warning("this worker simulates its GPU: every job holds %.2f s and draws placeholders", seconds)
        return SimulatedRenderer(open_store(settings), seconds)
    from gpu_worker.rendering import JobRenderer

    return JobRenderer.from_settings(settings, redis_client=redis_client)


def build_runtime(settings: Settings, publish: Publish, renderer: Renderer | None = None) -> WorkerRuntime:
    """A process's runtime: its own event loop, engine, Redis client and renderer.

    Args:
        renderer: None for the real one (:func:`build_renderer`).
    """
    loop = asyncio.new_event_loop()
    # One job at a time per process: a small pool is plenty, and Postgres connections are
    # a shared budget across every worker.
    engine = create_engine(str(settings.require("database_url")), pool_size=2, max_overflow=2)
    redis_client = redis.Redis.from_url(redis_url_of(settings), socket_timeout=30, health_check_interval=30)
    return WorkerRuntime(
        loop=loop,
        engine=engine,
        sessions=create_session_factory(engine),
        leases=LeaseBook(redis_client),
        publish=publish,
        renderer=renderer if renderer is not None else build_renderer(settings, redis_client),
        finisher=Finisher(str(settings.require("database_url"))) if finishing.wanted(settings.finish_behind) else None,
    )


def get_runtime(app: Celery) -> WorkerRuntime:
    """This process's runtime, built on first use (and again in a forked child)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = build_runtime(get_settings(), make_publisher(app))
    return _runtime


@worker_process_init.connect
def _import_the_render_stack(**_: Any) -> None:
    """Import torch, diffusers and the operations in each new pool process (no model loads).

    The imports take seconds; done here they never count against a task's time limit, and
    a limit can never interrupt them halfway (which would leave half-imported modules that
    break every later task of the process). Models still load on the first job that needs
    them, through the pipeline cache.
    """
    from gpu_worker.simulated import simulated_seconds

    if simulated_seconds() is not None:  # no render stack to import or model to warm
        _warm_then_mark_ready(warm_model=False)
        return
    import gpu_worker.cache
    import gpu_worker.images
    import gpu_worker.moderation
    import gpu_worker.ops.imagine
    import gpu_worker.ops.upscale
    import gpu_worker.ops.variation
    import gpu_worker.progress
    import gpu_worker.rendering  # noqa: F401

    _warm_then_mark_ready()


def _warm_then_mark_ready(*, warm_model: bool = True) -> None:
    """Load the worker's first model in the background, then mark this process ready.

    In a thread, so that the process reports alive to the pool at once (Celery kills a pool
    process that takes longer than its alive timeout); a job that arrives before the load
    ends waits for it in the pipeline cache, as it would have anyway.
    """
    from celery import current_app

    from gpu_worker import readiness

    model = os.environ.get(readiness.WARM_MODEL_ENV) if warm_model else None
    ready_file = os.environ.get(readiness.READY_FILE_ENV)
    if not model and not ready_file:
        return
    runtime = get_runtime(current_app)

    def warm() -> None:
        if model:
            try:
                runtime.renderer.pipelines.get(model)  # type: ignore[attr-defined]
                logger.info("model %s loaded and warm", model)
            except Exception:  # the first job that needs it reports the failure
                logger.warning("could not load model %s ahead of the first job", model, exc_info=True)
            _report_warm(runtime)
        if ready_file:
            pool_size = int(os.environ.get(readiness.POOL_SIZE_ENV, "1"))
            if readiness.mark(Path(ready_file), f"pool-{os.getpid()}", pool_size):
                logger.info("worker ready")

    threading.Thread(target=warm, name="warm-model", daemon=True).start()


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        try:
            _runtime.close()
        except Exception:  # shutting down: nothing left to do but tell the log
            logger.exception("could not close the worker runtime")
        _runtime = None


@shared_task(bind=True, name=RENDER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def render(self: Task, job_id: str) -> str:
    """Render job ``job_id`` (see :func:`gpu_worker.service.render_job`), or hand it back for an
    idle process that has its model warm (:mod:`gpu_worker.warm_routing`); returns the outcome."""
    runtime = get_runtime(self.app)
    if _handed_back(runtime, job_id):
        return "handed back"
    _report_warm(runtime, busy=True)
    try:
        return render_job(runtime, job_id).value
    finally:
        _report_warm(runtime, busy=False)


def _loaded(runtime: WorkerRuntime) -> list[str] | None:
    """The models this process has loaded; None for a renderer without a model cache."""
    pipelines = getattr(runtime.renderer, "pipelines", None)
    return pipelines.loaded() if pipelines is not None else None


def _report_warm(runtime: WorkerRuntime, *, busy: bool = False) -> None:
    """Which models this process has loaded now and whether it renders, for the other
    processes' routing and the worker's presence (and /models)."""
    from gpu_worker.warm_routing import report

    report(runtime.leases.client, _loaded(runtime) or [], busy=busy)


def _handed_back(runtime: WorkerRuntime, job_id: str) -> bool:
    """Publish ``job_id`` again for an idle process that has its model warm, when this one
    does not (:func:`gpu_worker.warm_routing.should_hand_back`); pause, so that it is the warm
    process that takes it. False when this process should render it."""
    from db.repositories import render_targets
    from gpu_worker.warm_routing import PAUSE_S, should_hand_back, warm_elsewhere_only

    loaded = _loaded(runtime)
    if loaded is None or not warm_elsewhere_only(runtime.leases.client, loaded):
        return False  # no other idle process has a model this one lacks: no row to read
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        return False  # render_job says what is wrong with it

    async def target() -> tuple[str, str] | None:
        async with runtime.sessions() as session:
            found = await render_targets(session=session, job_ids=[job_uuid], queued_only=True)
        return (found[0][1].value, found[0][2]) if found else None

    route = runtime.run(target())
    if route is None:
        return False
    lane, model = route
    if not should_hand_back(runtime.leases.client, job_id=job_uuid, model=model, lane=lane, loaded=loaded):
        return False
    try:
        runtime.publish(job_uuid, lane, model)
    except Exception:
        logger.warning("job %s: could not hand it back; rendering here", job_uuid, exc_info=True)
        return False
    time.sleep(PAUSE_S)
    return True


@shared_task(bind=True, name=RECONCILE_TASK, acks_late=True, ignore_result=True)
def reconcile_jobs(self: Task) -> dict[str, list[str]]:
    """One reconciler pass (see :func:`gpu_worker.recovery.reconcile`); returns the job ids it touched."""
    runtime = get_runtime(self.app)
    report = runtime.run(reconcile(sessions=runtime.sessions, leases=runtime.leases, publish=runtime.publish))
    return {
        "republished": [str(j) for j in report.republished],
        "requeued": [str(j) for j in report.requeued],
        "failed": [str(j) for j in report.failed],
    }
