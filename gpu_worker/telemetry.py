"""A render's Prometheus metrics (:mod:`core.metrics`), recorded by the worker's service."""

from __future__ import annotations

import logging
from typing import Any

from core.metrics import metrics

logger = logging.getLogger(__name__)


def count_render(renderer: Any, job: Any, outcome: str, seconds: float) -> None:
    """The render's metrics (:mod:`core.metrics`); never fails the render."""
    try:
        found = metrics()
        found.jobs.labels(job.model, job.kind.value, outcome).inc()
        found.job_seconds.labels(job.model, job.kind.value).observe(seconds)
        loaded = getattr(getattr(renderer, "pipelines", None), "loaded", None)
        if callable(loaded):
            found.warm_models.set(len(loaded()))
        free = gpu_free_bytes()
        if free is not None:
            found.gpu_free.set(free)
    except Exception:  # metrics are best effort
        logger.warning("could not record the metrics of job %s", job.id, exc_info=True)


def gpu_free_bytes() -> int | None:
    """Free memory of this process's GPU, or None without CUDA (or before torch is loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[0])
