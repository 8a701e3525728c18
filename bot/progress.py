"""Relaying the worker's progress to the job's acknowledgement message.

Workers publish ``{"job_id", "step", "total", "preview_png_b64"?, "loss"?}`` (a training's loss) on the Redis channel
:func:`core.tasks.progress_channel`. The bot subscribes to all of them and edits the
acknowledgement of each job with the step count and the preview, at most once every
:attr:`ProgressRelay.interval` seconds per job (Discord rate-limits edits, and users do not
need more). An edit never lands after the result: progress and delivery of a job take the
same lock, and progress stops once the job is delivered. With several bot processes, the
first to see a job's progress owns its edits (a Redis key), so edits are not doubled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import discord
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import render
from bot.background import stop_tasks
from bot.delivery import Delivery, token_alive
from bot.views.buttons import queued_view
from bot.webhooks import edit_original
from core.tasks import PROGRESS_CHANNEL_PREFIX
from db.repositories import discord_id_of, get_job

log = logging.getLogger(__name__)

MAX_PREVIEW_BYTES = 2 * 1024 * 1024


@dataclass
class _Tracked:
    """What the relay knows about one job's progress."""

    token: str | None
    primary: bool
    alive: bool
    prompt: str
    owner: int
    last_edit: float = 0.0
    pending: dict[str, Any] | None = None
    flusher: asyncio.Task[None] | None = field(default=None, repr=False)


class ProgressRelay:
    """Subscribes to progress events and edits acknowledgements, throttled per job."""

    def __init__(
        self,
        *,
        bot: discord.Client,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        delivery: Delivery,
        interval: float = 2.0,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.redis = redis
        self.delivery = delivery
        self.interval = interval
        self._jobs: dict[uuid.UUID, _Tracked | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.edits = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="progress-relay")

    async def close(self) -> None:
        # Hand over the jobs this process edits, so that a restarted bot takes them up.
        owned = [f"imaginarium:progress-owner:{job_id}" for job_id, t in self._jobs.items() if t is not None]
        if owned:
            with contextlib.suppress(Exception):
                await self.redis.delete(*owned)
        flushers = [t.flusher for t in self._jobs.values() if t is not None and t.flusher is not None]
        await stop_tasks([*([self._task] if self._task is not None else []), *flushers])

    async def wait_subscribed(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def _run(self) -> None:
        delay = 1.0
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(f"{PROGRESS_CHANNEL_PREFIX}*")
                self._subscribed.set()
                delay = 1.0
                async for message in pubsub.listen():
                    if message.get("type") != "pmessage":
                        continue
                    try:
                        await self.handle(json.loads(message["data"]))
                    except (ValueError, KeyError, TypeError):
                        log.debug("ignoring malformed progress event", exc_info=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("progress subscription lost; resubscribing in %.0fs", delay, exc_info=True)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def handle(self, event: dict[str, Any]) -> None:
        """One progress event: edit now, or keep it for the next allowed edit."""
        job_id = uuid.UUID(str(event["job_id"]))
        step, total = int(event["step"]), int(event["total"])
        tracked = await self._track(job_id)
        if tracked is None or not tracked.alive:
            return
        loss = event.get("loss")
        event = {"step": step, "total": total, "preview": event.get("preview_png_b64"),
                 "loss": float(loss) if isinstance(loss, int | float) else None}
        wait = tracked.last_edit + self.interval - time.monotonic()
        if wait <= 0 and tracked.flusher is None:
            await self._edit(job_id, tracked, event)
            return
        # Too soon: keep the newest event and edit once the interval has passed.
        tracked.pending = event
        if tracked.flusher is None:
            tracked.flusher = asyncio.create_task(self._flush_later(job_id, tracked, max(wait, 0)))

    async def _flush_later(self, job_id: uuid.UUID, tracked: _Tracked, wait: float) -> None:
        await asyncio.sleep(wait)
        tracked.flusher = None
        event, tracked.pending = tracked.pending, None
        if event is not None:
            await self._edit(job_id, tracked, event)

    async def _track(self, job_id: uuid.UUID) -> _Tracked | None:
        if job_id in self._jobs:
            return self._jobs[job_id]
        # The first process to see this job's progress edits it; the others ignore it.
        owner_key = f"imaginarium:progress-owner:{job_id}"
        mine = await self.redis.set(owner_key, f"{os.getpid()}", nx=True, ex=3600)
        tracked: _Tracked | None = None
        if mine:
            async with self.sessions() as session:
                job = await get_job(session=session, job_id=job_id)
                owner = await discord_id_of(session=session, user_id=job.user_id) if job is not None else None
            if job is not None and owner is not None:
                tracked = _Tracked(
                    token=job.interaction_token,
                    primary=job.interaction_id is not None,
                    alive=job.interaction_id is not None and token_alive(job),
                    prompt=job.prompt,
                    owner=owner,
                )
        if len(self._jobs) > 10_000:  # forget the oldest: finished jobs send no more events
            for key in list(self._jobs)[:5_000]:
                self._jobs.pop(key, None)
        self._jobs[job_id] = tracked
        return tracked

    async def _edit(self, job_id: uuid.UUID, tracked: _Tracked, event: dict[str, Any]) -> None:
        async with self.delivery.job_lock(job_id):
            if not tracked.alive or tracked.token is None or await self.delivery.is_delivered(job_id):
                tracked.alive = False
                return
            tracked.last_edit = time.monotonic()
            files: list[discord.File] = []
            preview = _decode_preview(event.get("preview"))
            if preview is not None:
                files.append(discord.File(io.BytesIO(preview), filename="progress.png"))
            content = render.progress_text(
                tracked.prompt, user_id=tracked.owner, step=event["step"], total=event["total"], loss=event.get("loss")
            )
            try:
                await edit_original(
                    self.bot, tracked.token, content=content, attachments=files, embeds=[],
                    # The cancel button stays while the job renders: it stops at its next step.
                    view=queued_view(job_id), allowed_mentions=discord.AllowedMentions.none(),
                )
                self.edits += 1
            except discord.HTTPException as exc:
                # Progress is best effort: a dead token or a deleted message ends it; the
                # result is still delivered (by a channel message if need be).
                if exc.status in (401, 403, 404):
                    tracked.alive = False
                log.info("progress edit of job %s failed: %s", job_id, exc.status)


def _decode_preview(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) <= MAX_PREVIEW_BYTES else None
