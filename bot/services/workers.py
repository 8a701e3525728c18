"""What the bot knows of the workers: their presence records in Redis (:mod:`core.workers`).

Used to refuse, before anything is charged, a job for a model that no worker serves while
workers of other models are up (a worker restart, when no worker at all is announcing,
queues jobs as usual), to show in ``/models`` what is available now, and to fail and
refund queued jobs whose model has had no worker for :data:`core.workers.UNSERVED_GRACE_S`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from core.spec import Lane
from core.workers import PRESENCE_PREFIX, UNSERVED_GRACE_S, WorkerPresence, last_served_key, serving
from db.repositories import fail_job, notify_job_event, queued_before, queued_models

log = logging.getLogger(__name__)


class WorkerDirectory:
    """Reads the live presence records, cached for ``cache_s`` seconds."""

    def __init__(self, redis: Any, *, cache_s: float = 2.0) -> None:
        self.redis = redis
        self.cache_s = cache_s
        self._cached: tuple[float, list[WorkerPresence]] | None = None

    async def live(self) -> list[WorkerPresence]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.cache_s:
            return self._cached[1]
        keys = [key async for key in self.redis.scan_iter(match=f"{PRESENCE_PREFIX}*", count=500)]
        values = await self.redis.mget(keys) if keys else []
        found = [p for p in (WorkerPresence.from_json(v) for v in values if v is not None) if p is not None]
        self._cached = (now, found)
        return found

    async def last_served(self, model: str) -> float | None:
        """When a worker last announced ``model`` (epoch seconds), or None."""
        raw = await self.redis.get(last_served_key(model))
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


async def check_served(workers: WorkerDirectory | None, model: str, lane: Lane) -> None:
    """Refuse a job no worker could take (see the module docstring).

    Raises:
        Refused: workers are up, and none serves ``model`` (in ``lane``).
    """
    if workers is None:
        return
    live = await workers.live()
    if not live or serving(live, model, lane.value):
        return
    if serving(live, model):
        raise Refused(
            f"No worker takes {lane.value}-lane jobs for **{model}** right now, so nothing was queued "
            "or charged. Try the other lane.",
            reason=RefusalReason.MODEL,
        )
    raise Refused(
        f"No worker serves **{model}** right now, so nothing was queued or charged. `/models` shows "
        "what is available.",
        reason=RefusalReason.MODEL,
    )


async def fail_unserved_jobs(
    sessions: async_sessionmaker[AsyncSession], workers: WorkerDirectory, *, grace_s: float = UNSERVED_GRACE_S
) -> list[Any]:
    """Fail and refund queued jobs whose model has had no worker for ``grace_s`` seconds.

    A model counts as unserved from when a worker last announced it, or, never announced,
    from when the job was queued. Returns the ids of the jobs failed.
    """
    live = await workers.live()
    now = time.time()
    failed = []
    async with sessions() as session:
        models = await queued_models(session=session)
    for model in models:
        if serving(live, model):
            continue
        last = await workers.last_served(model)
        if last is not None and now - last < grace_s:
            continue
        since = max(last or 0.0, now - grace_s)
        async with sessions() as session, session.begin():
            stale = await queued_before(session=session, model=model, before=_timestamp(since))
            minutes = round(grace_s / 60)
            for job_id in stale:
                if await fail_job(
                    session=session,
                    job_id=job_id,
                    error=f"no worker served the model {model} for {minutes} minutes",
                ):
                    await notify_job_event(session=session, job_id=job_id)
                    failed.append(job_id)
    if failed:
        log.warning("failed %d queued jobs whose models no worker served", len(failed))
    return failed


def _timestamp(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)
