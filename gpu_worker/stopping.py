"""Stopping a running job its owner cancelled: at the next denoising step, the unrendered
share of its credits refunded.

The bot marks the job in Postgres (``jobs.cancel_requested_at``, durable) and sets
:func:`core.tasks.stop_key` in Redis (fast). The render's step callback looks at the Redis
key at most every :data:`CHECK_INTERVAL_S` and raises :class:`JobStopped` with the share of
the work done; a job claimed with the Postgres mark already set (a task redelivered after
its worker died) stops before rendering anything. :func:`record_stopped` ends it:
cancelled, the rendered share charged, the rest refunded, ``NOTIFY job_events``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.metrics import metrics
from core.tasks import stop_key
from db.repositories import finish_cancelled, notify_job_event

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.25
"""Seconds between two looks at a job's stop key (a GPU step may take 30 ms)."""

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


class JobStopped(Exception):
    """The job's owner stopped it; ``rendered`` is the share of the work done (0..1)."""

    def __init__(self, rendered: float) -> None:
        super().__init__(f"stopped by its owner at {rendered:.0%}")
        self.rendered = rendered


class StopWatch:
    """Wraps a job's step callback so that it raises :class:`JobStopped` once a stop is asked.

    Args:
        client: a redis-py client (the worker's); None watches nothing.
        interval: seconds between two Redis reads for one job.
    """

    def __init__(self, client: Any, *, interval: float = CHECK_INTERVAL_S) -> None:
        self.client = client
        self.interval = interval

    def stop_requested(self, job_id: uuid.UUID) -> bool:
        """Whether the job's stop key is set (a Redis error counts as no: the render goes on)."""
        try:
            return bool(self.client.exists(stop_key(str(job_id))))
        except Exception:  # a lost Redis must not fail a render
            logger.warning("could not read the stop key of job %s", job_id, exc_info=True)
            return False

    def wrap(self, job_id: uuid.UUID, callback: StepCallback | None) -> StepCallback:
        """A ``callback_on_step_end`` that checks the stop key, then calls ``callback``."""
        last = time.monotonic()

        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal last
            now = time.monotonic()
            if now - last >= self.interval:
                last = now
                if self.stop_requested(job_id):
                    total = int(getattr(pipe, "num_timesteps", 0) or getattr(pipe, "_num_timesteps", 0) or 0)
                    raise JobStopped((step + 1) / total if total else 0.0)
            return callback(pipe, step, timestep, tensors) if callback is not None else tensors

        # The tensors the wrapped callback asks the pipeline for (gpu_worker.ops.common.render).
        setattr(on_step, "tensor_inputs", getattr(callback, "tensor_inputs", None))  # noqa: B010
        return on_step


async def record_stopped(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, rendered: float
) -> int | None:
    """End a stopped job (one transaction); returns the credits refunded, None if it had ended."""
    async with sessions() as session, session.begin():
        refunded = await finish_cancelled(session=session, job_id=job_id, rendered=rendered)
        if refunded is not None:
            await notify_job_event(session=session, job_id=job_id)
    if refunded:
        metrics().refunded.inc(refunded)
    if refunded is not None:
        logger.info("job %s stopped by its owner at %.0f%%; %d credits refunded", job_id, rendered * 100, refunded)
    return refunded
