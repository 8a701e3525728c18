"""A job's progress on Redis pub/sub, for the bot to show (:func:`core.tasks.progress_channel`)."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from typing import Any

from PIL import Image

from core.tasks import progress_channel
from gpu_worker.records import ClaimedJob

logger = logging.getLogger(__name__)


class RedisProgress:
    """Publishes a job's throttled progress on Redis pub/sub (:func:`core.tasks.progress_channel`).

    Each event is JSON ``{"job_id", "step", "total", "preview_png_b64"?}``; the bot edits
    the job's message with it. Progress is best effort: a failed publish is logged by
    :class:`~gpu_worker.progress.ThrottledProgress` and never fails the render.

    Args:
        client: a redis-py client.
        min_interval: seconds between two events of one job.
    """

    def __init__(self, client: Any, *, min_interval: float = 2.0) -> None:
        self.client = client
        self.min_interval = min_interval

    def __call__(self, job: ClaimedJob) -> Any:
        """The ``callback_on_step_end`` of one job (the total comes from the pipeline)."""
        from gpu_worker.progress import ThrottledProgress

        channel = progress_channel(str(job.id))

        def emit(event: Any) -> None:
            payload: dict[str, object] = {"job_id": str(job.id), "step": event.step, "total": event.total}
            if event.preview is not None:
                buf = io.BytesIO()
                event.preview.save(buf, format="PNG")
                payload["preview_png_b64"] = base64.b64encode(buf.getvalue()).decode("ascii")
            self.client.publish(channel, json.dumps(payload))

        size = (job.spec.width, job.spec.height)
        return ThrottledProgress(emit, min_interval=self.min_interval, image_size=size).callback

    def training(self, job: ClaimedJob) -> Any:
        """A training job's reporter: ``(step, total, loss, preview)`` as the same events, with
        ``loss``; at most one per interval, and always the last step."""
        channel = progress_channel(str(job.id))
        last = [0.0]

        def emit(step: int, total: int, loss: float, preview: Image.Image | None) -> None:
            now = time.monotonic()
            if now - last[0] < self.min_interval and step < total and preview is None:
                return
            last[0] = now
            payload: dict[str, object] = {"job_id": str(job.id), "step": step, "total": total, "loss": round(loss, 5)}
            if preview is not None:
                buf = io.BytesIO()
                preview.save(buf, format="PNG")
                payload["preview_png_b64"] = base64.b64encode(buf.getvalue()).decode("ascii")
            try:
                self.client.publish(channel, json.dumps(payload))
            except Exception:  # progress is best effort
                logger.warning("could not publish the progress of job %s", job.id, exc_info=True)

        return emit
