"""The Celery application of the GPU workers.

Long GPU jobs want: one job in flight per worker process (prefetch 1), acknowledgement only
after the job ended (``acks_late``) so a killed worker's job is redelivered, a hard time
limit, and a broker visibility timeout above that limit so Redis does not redeliver a job
that is still running. The attempt cap lives in the database (``jobs.attempts``), not in
Celery, so it survives redeliveries.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from core.tasks import CELERY_WIRE, RECONCILE_TASK, RENDER_TASK, render_queue

SOFT_TIME_LIMIT_S = int(os.environ.get("IMAGINARIUM_SOFT_TIME_LIMIT", "540"))
HARD_TIME_LIMIT_S = int(os.environ.get("IMAGINARIUM_HARD_TIME_LIMIT", "600"))


def make_celery(broker_url: str) -> Celery:
    """A Celery app configured for long, exclusive GPU jobs on ``broker_url``."""
    app = Celery("imaginarium", broker=broker_url, include=["gpu_worker.tasks"])
    app.conf.update(
        **CELERY_WIRE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_hijack_root_logger=False,
        task_soft_time_limit=SOFT_TIME_LIMIT_S,
        task_time_limit=HARD_TIME_LIMIT_S,
        # "priority": the Redis transport polls queues in the order the worker lists them
        # (fast lanes first) instead of round-robin.
        broker_transport_options={
            "visibility_timeout": HARD_TIME_LIMIT_S + 600,
            "queue_order_strategy": "priority",
        },
        task_routes={RENDER_TASK: {"queue": render_queue("fast", "default")}, RECONCILE_TASK: {"queue": "reconcile"}},
    )
    return app


def worker_queues(models: list[str], lanes: tuple[str, ...] = ("fast", "relax")) -> list[Queue]:
    """The queues a worker consumes: fast before relax for every model it serves.

    With the Redis transport's "priority" queue order (set in :func:`make_celery`) a busy
    worker takes fast-lane jobs before relax-lane ones.
    """
    return [Queue(render_queue(lane, model)) for lane in lanes for model in models] + [Queue("reconcile")]
