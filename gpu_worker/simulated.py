"""A simulated GPU, for measuring how the system scales with workers (``bench/scale.py``).

``IMAGINARIUM_SIMULATED_RENDER_SECONDS`` in a worker's environment (set by whoever starts the
worker: there is no flag, command or model entry a member could reach it by) replaces the
renderer with this one: each job holds for that many seconds without using the CPU, as a
job waiting on its GPU does, then stores small placeholder images through the real store,
so that everything around the render (queue, claim, lease, record, notification) runs as
it does for real. It imports no torch.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any

from PIL import Image

from gpu_worker.records import ClaimedJob, RenderResult, StoredImage

SECONDS_ENV = "IMAGINARIUM_SIMULATED_RENDER_SECONDS"


def simulated_seconds() -> float | None:
    """The simulated render time this worker was started with, or None for a real GPU."""
    raw = os.environ.get(SECONDS_ENV)
    if not raw:
        return None
    seconds = float(raw)
    if not 0 <= seconds <= 600:
        raise ValueError(f"{SECONDS_ENV} must be 0-600 seconds, not {raw}")
    return seconds


class SimulatedRenderer:
    """Holds ``seconds`` per job (sleeping: no CPU), then stores four 8x8 placeholders."""

    def __init__(self, store: Any, seconds: float) -> None:
        self.store = store
        self.seconds = seconds

    def __call__(self, job: ClaimedJob) -> RenderResult:
        started = time.perf_counter()
        time.sleep(self.seconds)
        images = []
        for index in range(4):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (index * 60, 90, 160)).save(buffer, format="PNG")
            data = buffer.getvalue()
            images.append(
                StoredImage(
                    index=index, seed=job.seed + index, storage_key=self.store.put(data), width=8, height=8,
                    sha256=hashlib.sha256(data).hexdigest(), nsfw_score=None, nsfw=False,
                )
            )
        return RenderResult(images=tuple(images), grid_storage_key=None,
                            timings={"operation": time.perf_counter() - started})
