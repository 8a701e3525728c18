"""Prometheus metrics: the one table of every metric the bot and the workers export.

Each process serves ``/metrics`` on ``METRICS_PORT`` when it is set (give the bot and each
worker their own port). A worker's pool processes record into files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up by
:func:`prepare_multiprocess` before anything imports prometheus_client), and the worker's main
process serves their sum. ``docker/grafana/imaginarium.json`` is a dashboard of these.

prometheus_client is imported on first use, so that :mod:`core` stays importable without it.
"""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
"""Seconds: from a tiny model's render to a long upscale."""
WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


def prepare_multiprocess(folder: Path) -> None:
    """Point prometheus_client at an empty ``folder`` for this process and its children.

    Call in a worker's main process before prometheus_client is imported (it reads the
    variable when it creates its value class) and before the pool forks.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)


@cache
def metrics() -> Any:
    """The metrics, created once per process (a namespace of prometheus_client objects)."""
    from types import SimpleNamespace

    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        # bot
        queue_depth=Gauge(
            "imaginarium_queue_depth", "Jobs waiting for a worker, by lane and model", ["lane", "model"],
            multiprocess_mode="livemax",
        ),
        submitted=Counter("imaginarium_jobs_submitted", "Jobs queued by members", ["kind", "lane", "model"]),
        refusals=Counter("imaginarium_refusals", "Requests refused before charging, by reason", ["reason"]),
        deliveries=Counter("imaginarium_deliveries", "Results posted to Discord, by outcome", ["outcome"]),
        # worker
        jobs=Counter("imaginarium_worker_jobs", "Renders ended, by model, kind and outcome", ["model", "kind", "outcome"]),
        job_seconds=Histogram(
            "imaginarium_worker_job_seconds", "Seconds from claim to the recorded end of a render",
            ["model", "kind"], buckets=DURATION_BUCKETS,
        ),
        wait_seconds=Histogram(
            "imaginarium_worker_wait_seconds", "Seconds a job waited in the queue before a worker claimed it",
            ["model", "lane"], buckets=WAIT_BUCKETS,
        ),
        failures=Counter("imaginarium_worker_failures", "Failed render attempts, by reason", ["reason"]),
        refunded=Counter("imaginarium_worker_refunded_credits", "Credits given back by stopped jobs"),
        gpu_free=Gauge("imaginarium_worker_gpu_free_bytes", "Free GPU memory", multiprocess_mode="min"),
        warm_models=Gauge("imaginarium_worker_warm_models", "Models loaded and warm", multiprocess_mode="max"),
    )


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces), in a daemon thread; in a worker's main
    process, the sum of its pool processes."""
    from prometheus_client import CollectorRegistry, start_http_server

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
