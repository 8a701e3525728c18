"""The worker's commands: ``imaginarium worker`` and ``imaginarium build-tiny-model``.

``imaginarium imagine`` is :mod:`gpu_worker.imagine_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.logs import configure_logging
from core.models import ModelCatalog, ModelConfigError
from core.models_file import load_catalog
from core.settings import Settings, get_settings
from core.spec import Lane
from core.workers import WORKER_ID_ENV, WORKER_LANES_ENV
from gpu_worker.recovery import RECONCILE_EVERY_S

logger = logging.getLogger(__name__)

LANES = tuple(lane.value for lane in Lane)


def build_tiny_model_main(argv: list[str]) -> int:
    """``imaginarium build-tiny-model``: see :func:`gpu_worker.tiny_model.build_tiny_model_main`."""
    from gpu_worker.tiny_model import build_tiny_model_main as build

    return build(argv)


# --------------------------------------------------------------------------- worker


def _worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaginarium worker",
        description="Start a GPU worker: a Celery worker that renders the jobs of the given models and lanes.",
    )
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated model names to serve (default: every model in the catalog)",
    )
    parser.add_argument(
        "--lanes", default=",".join(LANES), help="comma-separated lanes, served in this order"
    )
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo", "threads"),
        default="prefork",
        help="Celery pool; prefork (default) enforces time limits and survives a crashed job",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes; one per GPU (default 1)")
    parser.add_argument(
        "--hostname", default=None, help="Celery node name (default: imaginarium-<pid>@<host>, unique per worker)"
    )
    parser.add_argument(
        "--reconcile-every",
        type=float,
        default=RECONCILE_EVERY_S,
        metavar="SECONDS",
        help=f"how often this worker repairs lost or orphaned jobs (0: never; default {RECONCILE_EVERY_S:g})",
    )
    parser.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def catalog_of(settings: Settings) -> ModelCatalog:
    return load_catalog(settings.models_file, data_dir=settings.data_dir)


def worker_main(argv: list[str]) -> int:
    """``imaginarium worker [--models a,b] [--lanes fast,relax] [--pool prefork] [--concurrency 1]``.

    Consumes ``render.<lane>.<model>`` for every lane and model given (fast lanes first)
    and the reconcile queue. With no ``DATABASE_URL`` / broker URL it starts (or joins) the
    embedded Postgres and Redis in the data directory.

    Returns:
        0 after a clean shutdown; 2 for bad arguments or settings.
    """
    prog = "imaginarium worker"
    args = _worker_parser().parse_args(argv)
    settings = get_settings()
    try:
        catalog = catalog_of(settings)
    except ModelConfigError as exc:
        return fail(prog, str(exc))
    lanes = _split(args.lanes)
    bad_lanes = [lane for lane in lanes if lane not in LANES]
    if not lanes or bad_lanes:
        return fail(
            prog, f"--lanes: unknown lane {', '.join(bad_lanes) or '(none)'}; choose from {', '.join(LANES)}"
        )
    try:
        models = [catalog.get(name).name for name in _split(args.models)] if args.models else catalog.names()
    except KeyError as exc:
        return fail(prog, f"--models: {exc.args[0]}")
    if args.concurrency < 1:
        return fail(prog, "--concurrency must be at least 1")
    configure_logging(
        settings.log_level, settings.log_format,
        secrets=[settings.discord_token.get_secret_value()] if settings.discord_token else [],
    )

    from db.embedded import open_services_sync

    with open_services_sync(settings) as urls:
        # The pool processes read their settings from the environment: hand them the URLs
        # resolved here, so that they join these servers instead of embedding their own.
        os.environ.update(
            DATABASE_URL=urls.database_url, BROKER_URL=urls.broker_url, REDIS_URL=urls.redis_url
        )
        # Models with `compile` keep their compiled kernels here across restarts (gpu_worker.speed).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(settings.data_dir) / "compile-cache"))
        get_settings.cache_clear()
        return _run_celery_worker(
            broker_url=urls.broker_url,
            models=models,
            lanes=lanes,
            pool=args.pool,
            concurrency=args.concurrency,
            # A node name of its own: two workers of one machine (one per GPU) on RabbitMQ
            # would otherwise both declare the same exclusive control queue and one would stop.
            hostname=args.hostname or f"imaginarium-{os.getpid()}@{socket.gethostname()}",
            ready_file=args.ready_file,
            reconcile_every_s=args.reconcile_every,
            log_level=settings.log_level.upper(),
        )


def _run_celery_worker(
    *,
    broker_url: str,
    models: Sequence[str],
    lanes: Sequence[str],
    pool: str,
    concurrency: int,
    hostname: str | None,
    ready_file: Path | None,
    reconcile_every_s: float,
    log_level: str,
) -> int:
    from celery.signals import worker_ready, worker_shutdown

    from gpu_worker import host, readiness
    from gpu_worker.celery_app import make_celery, worker_queues
    from gpu_worker.tasks import make_publisher

    # Before the pool forks: its processes inherit the allocator's settings (gpu_worker.host)
    # and, with METRICS_PORT, the folder their metrics go to (core.metrics).
    host.keep_freed_memory()
    metrics_port = get_settings().metrics_port
    if metrics_port:
        from core.metrics import prepare_multiprocess

        prepare_multiprocess(Path(get_settings().data_dir) / "metrics" / str(os.getpid()))
    app = make_celery(broker_url)
    queues = worker_queues(list(models), tuple(lanes))
    app.conf.task_queues = queues
    # A new pool process imports torch and diffusers before it reports alive (see
    # gpu_worker.tasks): give it longer than Celery's default 4 s on a busy machine.
    app.conf.worker_proc_alive_timeout = 180
    reconciler = ReconcilerThread(get_settings(), make_publisher(app), interval_s=reconcile_every_s)
    presence = _presence_thread(models, lanes, hostname)
    # Before the pool forks: its processes report their warm models under this worker's id.
    os.environ[WORKER_ID_ENV] = presence.presence.worker_id
    os.environ[WORKER_LANES_ENV] = ",".join(lanes)

    pool_size = concurrency if pool == "prefork" else 0
    if ready_file is not None:
        # The pool processes mark themselves ready once imported and warm (gpu_worker.tasks).
        readiness.reset(ready_file)
        os.environ[readiness.READY_FILE_ENV] = str(ready_file)
        os.environ[readiness.POOL_SIZE_ENV] = str(pool_size)
    if models:
        os.environ[readiness.WARM_MODEL_ENV] = models[0]

    def on_ready(**_: Any) -> None:
        presence.start()
        if metrics_port:
            from core.metrics import serve

            serve(metrics_port)
            logger.info("metrics on port %d", metrics_port)
        if reconcile_every_s > 0:
            reconciler.start()
        if ready_file is not None:
            ready_file.parent.mkdir(parents=True, exist_ok=True)
            readiness.mark(ready_file, "consumer", pool_size)
        logger.info("worker listening: models %s, lanes %s", ", ".join(models), ", ".join(lanes))

    def on_shutdown(**_: Any) -> None:
        presence.stop()
        reconciler.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--queues={','.join(q.name for q in queues)}",
        f"--loglevel={log_level}",
        # Gossip and mingle cost seconds at start and traffic forever; workers need neither.
        "--without-gossip",
        "--without-mingle",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    status = app.worker_main(argv)
    return int(status or 0)


def _presence_thread(models: Sequence[str], lanes: Sequence[str], hostname: str | None) -> Any:
    """This worker's presence heartbeat (:mod:`gpu_worker.presence`), on the progress Redis."""
    import redis

    from gpu_worker.presence import PresenceThread
    from gpu_worker.tasks import redis_url_of

    client = redis.Redis.from_url(redis_url_of(get_settings()), socket_timeout=10)
    return PresenceThread(client, models=models, lanes=lanes, worker_id=hostname)


class ReconcilerThread:
    """Runs :func:`gpu_worker.service.reconcile` every ``interval_s`` in the worker's main process.

    It runs beside the pool rather than as a queued task so that a busy render queue can
    never starve it: repairing lost jobs matters most when the workers are busiest.
    """

    def __init__(self, settings: Settings, publish: Any, *, interval_s: float) -> None:
        self.settings = settings
        self.publish = publish
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for the pass in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        import redis

        from db.session import create_engine, create_session_factory
        from gpu_worker.leases import LeaseBook
        from gpu_worker.purging import local_loras_dir, purge_deleted_files
        from gpu_worker.recovery import reconcile
        from gpu_worker.store import open_store
        from gpu_worker.tasks import redis_url_of

        loop = asyncio.new_event_loop()
        engine = create_engine(str(self.settings.require("database_url")), pool_size=1, max_overflow=0)
        sessions = create_session_factory(engine)
        leases = LeaseBook(redis.Redis.from_url(redis_url_of(self.settings), socket_timeout=30))
        store: Any = None
        try:
            while True:
                try:
                    loop.run_until_complete(reconcile(sessions=sessions, leases=leases, publish=self.publish))
                    # Deleted LoRAs' files: from the store, and this worker's own copies.
                    if store is None:
                        store = open_store(self.settings)
                    loop.run_until_complete(purge_deleted_files(
                        sessions=sessions, store=store,
                        local_dir=local_loras_dir(self.settings.data_dir),
                    ))
                except Exception:
                    # The database or broker may be down for a while; the next pass tries again.
                    logger.exception("reconciler pass failed")
                if self._stop.wait(self.interval_s):
                    break
        finally:
            loop.run_until_complete(engine.dispose())
            loop.close()
            leases.client.close()


# --------------------------------------------------------------------------- imagine
