"""Delivering ended jobs exactly once: LISTEN on ``job_events``, a periodic sweep, a queue of
workers, a lock per job; what a job is posted as and how is :mod:`bot.delivery.messages` and
:mod:`bot.delivery.posting`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from datetime import timedelta

import asyncpg
import discord
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.background import stop_tasks
from bot.context import ImageReader
from bot.delivery import files
from bot.delivery.acks import AckStore, redis_key
from bot.delivery.files import DEFAULT_SIZE_LIMIT
from bot.delivery.messages import Prepared, prepare
from bot.delivery.posting import Outcome, Poster
from core.metrics import metrics
from core.tasks import JOB_EVENTS_CHANNEL
from db.models import Guild, Job, NsfwPolicy
from db.repositories import discord_id_of, ended_without_message, get_job, guild_by_id, set_result_message

log = logging.getLogger(__name__)

SWEEP_WINDOW = timedelta(days=1)
"""Jobs that ended longer ago than this are not delivered any more."""
MAX_FAILURES = 5


class Delivery:
    """Delivers ended jobs: LISTEN on ``job_events``, a periodic sweep, and :meth:`deliver`.

    Args:
        bot: the connected bot (its HTTP client posts the messages).
        sessions: database sessions.
        redis: for locks, markers and acknowledgement records.
        images: where image files are read from.
        database_url: the ``postgresql+asyncpg://`` URL to LISTEN on.
        sweep_interval: seconds between sweeps.
        concurrency: deliveries in flight at once.
    """

    def __init__(
        self,
        *,
        bot: discord.Client,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        images: ImageReader,
        database_url: str,
        sweep_interval: float = 30.0,
        concurrency: int = 8,
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.redis = redis
        self.images = images
        self.database_url = database_url
        self.sweep_interval = sweep_interval
        self.acks = AckStore(redis)
        self.poster = Poster(client=bot, redis=redis)
        self._queue: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._queued: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._concurrency = concurrency
        self._locks: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = weakref.WeakValueDictionary()
        self._listening = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening, sweeping and delivering in the background."""
        self._tasks.append(asyncio.create_task(self._listen(), name="delivery-listen"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="delivery-sweep"))
        self._tasks += [
            asyncio.create_task(self._work(), name=f"delivery-{n}") for n in range(self._concurrency)
        ]

    async def close(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()

    async def wait_listening(self, timeout: float = 10.0) -> None:
        """Wait until the LISTEN connection is up (for tests and startup logs)."""
        await asyncio.wait_for(self._listening.wait(), timeout)

    def submit(self, job_id: uuid.UUID) -> None:
        """Queue a job for delivery (at most once in the queue at a time)."""
        if job_id not in self._queued:
            self._queued.add(job_id)
            self._queue.put_nowait(job_id)

    def job_lock(self, job_id: uuid.UUID) -> asyncio.Lock:
        """The lock that orders progress edits and the delivery of one job in this process."""
        lock = self._locks.get(job_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[job_id] = lock
        return lock

    async def is_delivered(self, job_id: uuid.UUID) -> bool:
        """Whether the job's result is posted (progress edits must stop then)."""
        return bool(await self.redis.exists(redis_key("delivered", job_id)))

    # -- background ---------------------------------------------------------------------------

    async def _listen(self) -> None:
        url = make_url(self.database_url)
        query = {k: v if isinstance(v, str) else v[0] for k, v in url.query.items()}
        dsn = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        delay = 1.0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, **query)
                await conn.add_listener(JOB_EVENTS_CHANNEL, self._on_notify)
                self._listening.set()
                delay = 1.0
                log.info("listening for job events")
                # Anything that ended while we were not listening is found by a sweep.
                await self.sweep()
                while not conn.is_closed():
                    await asyncio.sleep(5)
                    await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("job events connection lost; reconnecting in %.0fs", delay, exc_info=True)
            finally:
                self._listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            log.warning("ignoring job event with payload %r", payload[:80])
            return
        self.submit(job_id)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery sweep failed")

    async def sweep(self) -> int:
        """Queue every recently ended job that has no result message yet; return how many."""
        async with self.sessions() as session:
            ids = await ended_without_message(session=session, within=SWEEP_WINDOW)
        count = 0
        for job_id in ids:
            failures = await self.redis.get(redis_key("delivery-failures", job_id))
            if failures is not None and int(failures) >= MAX_FAILURES:
                continue
            self.submit(job_id)
            count += 1
        return count

    async def _work(self) -> None:
        # The channel cache (NSFW flags, upload limits) fills on READY: deliver after it.
        await self.bot.wait_until_ready()
        while True:
            job_id = await self._queue.get()
            self._queued.discard(job_id)
            try:
                outcome = await self.deliver(job_id)
                log.debug("delivery of %s: %s", job_id, outcome)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivering job %s failed; the sweep retries it", job_id)
                await self._count_failure(job_id)

    async def _count_failure(self, job_id: uuid.UUID) -> None:
        failures = redis_key("delivery-failures", job_id)
        await self.redis.incr(failures)
        await self.redis.expire(failures, int(SWEEP_WINDOW.total_seconds()))

    # -- one job ------------------------------------------------------------------------------

    async def deliver(self, job_id: uuid.UUID) -> Outcome:
        """Post one ended job's result (or failure) unless it is posted already."""
        lock_key = redis_key("deliver-lock", job_id)
        if not await self.redis.set(lock_key, "1", nx=True, px=120_000):
            return Outcome.BUSY
        try:
            async with self.job_lock(job_id):
                outcome = await self._deliver(job_id)
        finally:
            await self.redis.delete(lock_key)
        metrics().deliveries.labels(str(outcome.value)).inc()
        return outcome

    async def _deliver(self, job_id: uuid.UUID) -> Outcome:
        async with self.sessions() as session:
            job = await get_job(session=session, job_id=job_id, with_images=True)
            if job is None or not job.has_result:
                return Outcome.NOT_READY
            if job.result_message_id is not None:
                return Outcome.ALREADY
            owner = await discord_id_of(session=session, user_id=job.user_id)
            guild_row = await guild_by_id(session=session, guild_id=job.guild_id)
        assert owner is not None
        ack = await self.acks.get(job.id)
        size_limit = ack.size_limit if ack else self._channel_size_limit(guild_row)
        prepared = await self.prepare(job, owner=owner, guild=guild_row, size_limit=size_limit)
        posted = await self.poster.post(job, owner, prepared, ack)
        if posted is None:
            await self._count_failure(job.id)
            return Outcome.UNDELIVERABLE
        outcome, channel_id, message_id = posted
        async with self.sessions() as session, session.begin():
            await set_result_message(
                session=session, job_id=job.id, channel_id=channel_id, message_id=message_id
            )
        await self.redis.set(redis_key("delivered", job.id), "1", ex=int(SWEEP_WINDOW.total_seconds()))
        await self.redis.delete(redis_key("posting", job.id))
        log.info("delivered job %s (%s) as message %s", job.id, outcome, message_id)
        return outcome

    def _channel_size_limit(self, guild: Guild | None) -> int:
        found = self.bot.get_guild(guild.discord_id) if guild is not None else None
        return found.filesize_limit if found is not None else DEFAULT_SIZE_LIMIT

    def channel_is_nsfw(self, channel_id: int | None) -> bool:
        """Whether the channel is marked NSFW (unknown channels count as not)."""
        channel = self.bot.get_channel(channel_id) if channel_id is not None else None
        is_nsfw = getattr(channel, "is_nsfw", None)
        return bool(is_nsfw()) if callable(is_nsfw) else False

    async def image_file(
        self,
        key: str,
        *,
        stem: str,
        flagged: bool,
        policy: NsfwPolicy | None,
        in_dm: bool,
        channel_id: int | None,
        size_limit: int,
    ) -> tuple[discord.File | None, str | None]:
        """One stored image as an upload that fits, with the NSFW rule of its channel applied."""
        return await files.image_file(
            self.images,
            key,
            stem=stem,
            flagged=flagged,
            policy=policy,
            in_dm=in_dm,
            channel_nsfw=self.channel_is_nsfw(channel_id),
            size_limit=size_limit,
        )

    async def prepare(self, job: Job, *, owner: int, guild: Guild | None, size_limit: int) -> Prepared:
        """The result message of an ended job: text, file and buttons."""
        return await prepare(job, owner=owner, guild=guild, size_limit=size_limit, files_of=self.image_file)
