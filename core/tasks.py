"""Names and payloads where the bot and the GPU worker meet (through the broker and Postgres).

The bot publishes ``render(job_id)`` (:data:`RENDER_TASK`) to the queue of the job's lane and
model (:func:`render_queue`). Payloads carry ids only: everything else is re-read from
Postgres.

A worker's part of a job ends with one database transaction that marks the job done (images
stored, credits captured) or failed (credits refunded) and sends
``NOTIFY job_events, '<job_id>'`` (:data:`JOB_EVENTS_CHANNEL`); the notification is delivered
only if that transaction commits. The bot LISTENs on that channel and posts the result to
Discord; it also sweeps for ended jobs that have no result message yet, so a notification
lost while the bot was down only delays a post. The GPU never waits on Discord.

While a job renders, the worker publishes progress on Redis pub/sub, channel
:func:`progress_channel`, as JSON ``{"job_id", "step", "total", "preview_png_b64"?}``.
"""

from __future__ import annotations

RENDER_TASK = "imaginarium.render"
RECONCILE_TASK = "imaginarium.reconcile"

RECONCILE_QUEUE = "reconcile"
"""The queue of :data:`RECONCILE_TASK` (every worker consumes it)."""
JOB_EVENTS_CHANNEL = "job_events"
"""The Postgres NOTIFY channel; the payload is the id of a job that reached a terminal state."""
PROGRESS_CHANNEL_PREFIX = "imaginarium:progress:"
MAX_ATTEMPTS = 3


CELERY_WIRE = {
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_ignore_result": True,
    "result_backend": None,
    "broker_connection_retry_on_startup": True,
}
"""The Celery settings the bot's publisher and the workers must agree on (ids-only JSON
payloads, no result backend: results go through Postgres)."""


def render_queue(lane: str, model: str) -> str:
    """The queue a render job goes to: one per lane and model, so a worker serves what it has warm."""
    return f"render.{lane}.{model}"


def progress_channel(job_id: str) -> str:
    """The Redis pub/sub channel that carries a job's progress events."""
    return f"{PROGRESS_CHANNEL_PREFIX}{job_id}"


STOP_KEY_TTL_S = 24 * 3600
"""How long a stop request stays in Redis (longer than any render)."""


def stop_key(job_id: str) -> str:
    """The Redis key whose presence asks a running job to stop at its next step (the bot
    sets it beside ``jobs.cancel_requested_at``; :mod:`gpu_worker.stopping` reads it)."""
    return f"imaginarium:stop:{job_id}"
