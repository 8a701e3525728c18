"""Publishing render tasks to the broker from the bot, through the outbox.

The bot has a Celery app of its own that only sends: it names the task
(:data:`core.tasks.RENDER_TASK`) and never imports the worker's code. A job's outbox row is
written in the transaction that creates the job; after that transaction commits the task
is sent and the row marked published. If the bot dies in between, :func:`drain_outbox`
(run periodically) sends what was left; a task sent twice is harmless because a worker's
claim lets only one run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.tasks import CELERY_WIRE, RENDER_TASK, render_queue
from db.repositories import OUTBOX_GRACE, drain_outbox, mark_jobs_published, render_targets

log = logging.getLogger(__name__)


def make_publisher(broker_url: str) -> Celery:
    """A Celery app that only publishes, with the workers' serializer settings."""
    app = Celery("imaginarium-bot", broker=broker_url, set_as_current=False)
    app.conf.update(
        **CELERY_WIRE,
        # A broker outage must not hang a command: fail fast, the outbox sends it later.
        broker_transport_options={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    return app


class RenderPublisher:
    """Sends ``render(job_id)`` to the queue of the job's lane and model."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def _send(self, job_id: uuid.UUID, lane: str, model: str) -> None:
        self.celery.send_task(RENDER_TASK, args=[str(job_id)], queue=render_queue(lane, model))

    async def publish(
        self, *, sessions: async_sessionmaker[AsyncSession], job_ids: Sequence[uuid.UUID]
    ) -> int:
        """Send the committed jobs' render tasks and mark their outbox rows published.

        A broker error is logged, not raised: the rows stay unpublished and
        :func:`drain_outbox` retries them, so the user's job is not lost.

        Returns:
            How many tasks were sent.
        """
        if not job_ids:
            return 0
        async with sessions() as session:
            rows = await render_targets(session=session, job_ids=job_ids)
        sent: list[uuid.UUID] = []
        for job_id, lane, model in rows:
            try:
                # kombu's Redis client is blocking; keep the event loop free for other users.
                await asyncio.to_thread(self._send, job_id, lane.value, model)
            except Exception:
                log.exception("could not publish job %s; the outbox will retry", job_id)
                continue
            sent.append(job_id)
        if sent:
            async with sessions() as session, session.begin():
                await mark_jobs_published(session=session, job_ids=sent)
        return len(sent)

    async def drain_outbox(
        self, *, sessions: async_sessionmaker[AsyncSession], older_than: timedelta = OUTBOX_GRACE
    ) -> int:
        """Send outbox rows that stayed unpublished longer than ``older_than``; how many."""
        return len(await drain_outbox(sessions=sessions, send=self._send, older_than=older_than))
