"""Keeping a waiting job's place in the queue up to date on its acknowledgement.

A job's acknowledgement says "queued (position N)" when it is made. While the job waits,
the jobs ahead of it start and its place moves up; every :data:`INTERVAL_S` this loop
edits the acknowledgements whose place has changed, through the interaction's webhook
(valid for 15 minutes after the command; after that the message stays as it was).

The acknowledgement text is remembered in Redis (:func:`remember_waiting`, a sorted set of
waiting jobs scored by when their token expires), so any bot process can refresh it and a
restarted bot carries on; one process refreshes per round (a Redis lock). An edit takes the
job's delivery lock and re-reads its status under it, so it never lands on a progress edit
or a result. At most :data:`MAX_EDITS` edits per round, nearest to the front first, keep it
inside Discord's rate limits however long the queue is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid

import discord
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.background import stop_tasks
from bot.context import DeliveryPort
from bot.webhooks import edit_original
from db.models import JobStatus
from db.repositories import get_job, queue_position

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
"""Seconds between two rounds."""
MAX_EDITS = 20
"""Acknowledgements edited per round at most."""
MAX_CHECKED = 200
"""Waiting jobs looked at per round at most (those whose tokens expire first)."""
TOKEN_LIFETIME_S = 15 * 60 - 30
"""How long after the command its acknowledgement can still be edited (Discord: 15 min)."""

WAITING_KEY = "imaginarium:waiting"
"""Sorted set: job ids whose acknowledgement shows a place, scored by token expiry (epoch s)."""
_TEXT_KEY = "imaginarium:waiting-text:{}"
_LOCK_KEY = "imaginarium:queue-refresh-lock"
_POSITION = re.compile(r"\(position \d+\)")


async def remember_waiting(redis: Redis, job_id: uuid.UUID, text: str, *, issued_at: float | None = None) -> None:
    """Remember a single job's acknowledgement text (it must show ``(position N)``)."""
    if _POSITION.search(text) is None:
        return
    expires = (issued_at if issued_at is not None else time.time()) + TOKEN_LIFETIME_S
    ttl = max(1, int(expires - time.time()))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(_TEXT_KEY.format(job_id), text, ex=ttl)
        pipe.zadd(WAITING_KEY, {str(job_id): expires})
        await pipe.execute()


class QueueRefresher:
    """The loop described in the module docstring."""

    def __init__(
        self,
        *,
        bot: discord.Client,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        delivery: DeliveryPort,
        interval: float = INTERVAL_S,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.redis = redis
        self.delivery = delivery
        self.interval = interval
        self.edits = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-refresh")

    async def close(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self.redis.set(_LOCK_KEY, "1", nx=True, px=int(self.interval * 900)):
                    await self.refresh_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a round that failed is retried by the next one
                log.warning("queue position refresh failed", exc_info=True)

    async def refresh_once(self) -> int:
        """One round; returns how many acknowledgements it edited."""
        now = time.time()
        await self.redis.zremrangebyscore(WAITING_KEY, "-inf", now)
        members = await self.redis.zrangebyscore(WAITING_KEY, now, "+inf", start=0, num=MAX_CHECKED)
        due: list[tuple[int, uuid.UUID, str, str]] = []
        async with self.sessions() as session:
            for member in members:
                job_id = uuid.UUID(member.decode() if isinstance(member, bytes) else str(member))
                job = await get_job(session=session, job_id=job_id)
                text = await self.redis.get(_TEXT_KEY.format(job_id))
                if job is None or job.status != JobStatus.QUEUED or not job.interaction_token or text is None:
                    await self._forget(job_id)
                    continue
                shown = text.decode() if isinstance(text, bytes) else text
                position = await queue_position(session=session, job=job)
                if position and f"(position {position})" not in shown:
                    due.append((position, job_id, job.interaction_token, _POSITION.sub(f"(position {position})", shown)))
        edited = 0
        for _, job_id, token, text in sorted(due)[:MAX_EDITS]:
            if await self._edit(job_id, token, text):
                edited += 1
        self.edits += edited
        return edited

    async def _forget(self, job_id: uuid.UUID) -> None:
        await self.redis.zrem(WAITING_KEY, str(job_id))
        await self.redis.delete(_TEXT_KEY.format(job_id))

    async def _edit(self, job_id: uuid.UUID, token: str, text: str) -> bool:
        async with self.delivery.job_lock(job_id):
            async with self.sessions() as session:
                job = await get_job(session=session, job_id=job_id)
            if job is None or job.status != JobStatus.QUEUED or await self.delivery.is_delivered(job_id):
                await self._forget(job_id)
                return False
            try:
                await edit_original(self.bot, token, content=text, allowed_mentions=discord.AllowedMentions.none())
            except discord.HTTPException as exc:
                if exc.status in (401, 403, 404):  # token expired, message deleted
                    await self._forget(job_id)
                log.info("queue position edit of job %s failed: %s", job_id, exc.status)
                return False
            with contextlib.suppress(Exception):
                ttl = await self.redis.ttl(_TEXT_KEY.format(job_id))
                await self.redis.set(_TEXT_KEY.format(job_id), text, ex=max(1, int(ttl)))
        return True
