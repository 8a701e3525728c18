"""Posting finished and failed jobs to Discord, exactly once.

A worker ends a job with one transaction that also sends ``NOTIFY job_events, '<job id>'``.
The bot LISTENs on that channel and also sweeps the database for ended jobs without a
result message (notifications are lost while the bot is down), so every job is delivered
after any restart.

Where the result goes:

* while the interaction token lives (15 minutes, less a safety margin), the job's
  acknowledgement message becomes the result (an edit of ``@original``: retrying it can
  never post twice); jobs that share an interaction (permutations, ``--repeat``) get a
  follow-up message each;
* after that, or when the acknowledgement is gone, a channel message that replies to the
  acknowledgement and mentions the user.

The message id is stored on the job (``set_result_message``); a job that has one is
skipped. Before a new message is posted a marker is set in Redis; a delivery that finds
the marker but no stored id (the bot died between posting and storing) looks for the
message in the channel before posting again. A Redis lock keeps two deliveries of one job
(LISTEN and a sweep, or two bot processes) from running at once. Discord's 429s and 5xx
are retried with backoff; the GPU never waits on any of this.

Images bigger than the upload limit are re-encoded (WebP, then JPEG) and then scaled
down until they fit. Images flagged NSFW are shown as they are in NSFW channels and DMs,
and elsewhere behind a spoiler or withheld, by the server's policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import discord
from discord.http import Route, handle_message_parameters
from PIL import Image as PILImage
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import render
from bot.background import stop_tasks
from bot.context import ImageReader
from bot.views.buttons import build_view
from core.kinds import UnknownRecipe, recipe
from core.spec import JobSpec
from core.tasks import JOB_EVENTS_CHANNEL
from db.models import Guild, Image, Job, JobStatus, NsfwPolicy, User
from db.repositories import get_job, set_result_message

log = logging.getLogger(__name__)

DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
"""Discord's upload limit for a server without boosts."""
TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=30)
"""Stop using a token this long before it expires: an upload started at 14:59 may not finish."""
SWEEP_WINDOW = timedelta(days=1)
"""Jobs that ended longer ago than this are not delivered any more."""
MAX_FAILURES = 5
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
_KEY = "imaginarium:"


class Outcome(enum.StrEnum):
    """What one delivery attempt did."""

    EDITED = "edited"
    """The acknowledgement message became the result."""
    FOLLOWUP = "followup"
    """Posted as a follow-up through the interaction webhook."""
    CHANNEL = "channel"
    """Posted as a channel message (the token had expired)."""
    FOUND = "found"
    """An earlier attempt had posted it; its id is now stored."""
    ALREADY = "already"
    """The job already had a result message."""
    NOT_READY = "not_ready"
    """The job has not ended (or was cancelled: nothing to deliver)."""
    BUSY = "busy"
    """Another delivery of this job is running."""
    UNDELIVERABLE = "undeliverable"
    """Discord refused (no channel, no access); counted towards giving up."""


class NsfwMode(enum.StrEnum):
    SHOW = "show"
    SPOILER = "spoiler"
    WITHHOLD = "withhold"


def nsfw_mode(flagged: bool, policy: NsfwPolicy | None, *, in_dm: bool, channel_nsfw: bool) -> NsfwMode:
    """How to post an image: as is, behind a spoiler, or not at all.

    NSFW channels and DMs get flagged images as they are; elsewhere the server's policy
    decides between a spoiler and withholding. ``allow`` still means a spoiler outside NSFW
    channels: a flagged image never shows uncovered in a channel that is not marked NSFW.
    """
    if not flagged or in_dm or channel_nsfw:
        return NsfwMode.SHOW
    if policy is NsfwPolicy.WITHHOLD:
        return NsfwMode.WITHHOLD
    return NsfwMode.SPOILER


def fit_image(data: bytes, limit: int, stem: str) -> tuple[bytes, str]:
    """The image as a file of at most ``limit`` bytes, and its file name.

    PNG as rendered when it fits; else WebP (lossless, then lossy at falling quality),
    then JPEG; then the image is scaled down by steps of 0.75 until one of those fits.

    Raises:
        ValueError: ``limit`` is too small for even a tiny JPEG.
    """
    if len(data) <= limit:
        return data, f"{stem}.png"
    with PILImage.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    scale = 1.0
    while True:
        for fmt, options in (
            ("WEBP", {"lossless": True}),
            ("WEBP", {"quality": 90}),
            ("WEBP", {"quality": 75}),
            ("JPEG", {"quality": 85}),
            ("JPEG", {"quality": 70}),
        ):
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **options)
            if buffer.tell() <= limit:
                return buffer.getvalue(), f"{stem}.{'webp' if fmt == 'WEBP' else 'jpg'}"
        if min(image.size) <= 16:
            raise ValueError(f"cannot fit an image into {limit} bytes")
        scale *= 0.75
        image = image.resize((max(1, int(image.width * 0.75)), max(1, int(image.height * 0.75))))


@dataclass(frozen=True, slots=True)
class AckRecord:
    """A job's acknowledgement message and the upload limit of its interaction."""

    channel_id: int
    message_id: int
    size_limit: int = DEFAULT_SIZE_LIMIT


class AckStore:
    """Remembers each job's acknowledgement message (in Redis, for a month)."""

    TTL_S = 30 * 24 * 3600

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def remember(self, job_id: uuid.UUID, *, channel_id: int, message_id: int, size_limit: int) -> None:
        value = json.dumps({"channel_id": channel_id, "message_id": message_id, "size_limit": size_limit})
        await self.redis.set(f"{_KEY}ack:{job_id}", value, ex=self.TTL_S)

    async def get(self, job_id: uuid.UUID) -> AckRecord | None:
        raw = await self.redis.get(f"{_KEY}ack:{job_id}")
        if raw is None:
            return None
        data = json.loads(raw)
        return AckRecord(
            int(data["channel_id"]),
            int(data["message_id"]),
            int(data.get("size_limit") or DEFAULT_SIZE_LIMIT),
        )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A result message ready to send."""

    content: str
    files: list[discord.File]
    view: discord.ui.View | None


def token_alive(job: Job, now: datetime | None = None) -> bool:
    """Whether the job's interaction token can still post (with a safety margin)."""
    if not job.interaction_token or job.interaction_created_at is None:
        return False
    now = now or datetime.now(UTC)
    return now < job.interaction_created_at + TOKEN_LIFETIME - TOKEN_MARGIN


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
        return bool(await self.redis.exists(f"{_KEY}delivered:{job_id}"))

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
            ids = list(
                await session.scalars(
                    select(Job.id)
                    .where(
                        Job.status.in_([JobStatus.DONE, JobStatus.FAILED]),
                        Job.result_message_id.is_(None),
                        Job.channel_id.is_not(None) | Job.interaction_token.is_not(None),
                        Job.finished_at > datetime.now(UTC) - SWEEP_WINDOW,
                    )
                    .order_by(Job.finished_at)
                    .limit(200)
                )
            )
        count = 0
        for job_id in ids:
            failures = await self.redis.get(f"{_KEY}delivery-failures:{job_id}")
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
        key = f"{_KEY}delivery-failures:{job_id}"
        await self.redis.incr(key)
        await self.redis.expire(key, int(SWEEP_WINDOW.total_seconds()))

    # -- one job ------------------------------------------------------------------------------

    async def deliver(self, job_id: uuid.UUID) -> Outcome:
        """Post one ended job's result (or failure) unless it is posted already."""
        lock_key = f"{_KEY}deliver-lock:{job_id}"
        if not await self.redis.set(lock_key, "1", nx=True, px=120_000):
            return Outcome.BUSY
        try:
            async with self.job_lock(job_id):
                return await self._deliver(job_id)
        finally:
            await self.redis.delete(lock_key)

    async def _deliver(self, job_id: uuid.UUID) -> Outcome:
        async with self.sessions() as session:
            job = await get_job(session=session, job_id=job_id, with_images=True)
            if job is None or job.status not in (JobStatus.DONE, JobStatus.FAILED):
                return Outcome.NOT_READY
            if job.result_message_id is not None:
                return Outcome.ALREADY
            owner = await session.scalar(select(User.discord_id).where(User.id == job.user_id))
            guild_row = await session.get(Guild, job.guild_id) if job.guild_id is not None else None
        assert owner is not None
        ack = await self.acks.get(job.id)
        size_limit = ack.size_limit if ack else self._channel_size_limit(guild_row)
        prepared = await self.prepare(job, owner=owner, guild=guild_row, size_limit=size_limit)
        posted = await self._post(job, owner, prepared, ack)
        if posted is None:
            await self._count_failure(job.id)
            return Outcome.UNDELIVERABLE
        outcome, channel_id, message_id = posted
        async with self.sessions() as session, session.begin():
            await set_result_message(
                session=session, job_id=job.id, channel_id=channel_id, message_id=message_id
            )
        await self.redis.set(f"{_KEY}delivered:{job.id}", "1", ex=int(SWEEP_WINDOW.total_seconds()))
        await self.redis.delete(f"{_KEY}posting:{job.id}")
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
        """One stored image as an upload that fits, with the NSFW rule applied.

        Returns:
            The file (None when withheld) and a note for the message (or None).
        """
        mode = nsfw_mode(flagged, policy, in_dm=in_dm, channel_nsfw=self.channel_is_nsfw(channel_id))
        if mode is NsfwMode.WITHHOLD:
            return None, render.WITHHELD_NOTE
        data = await self.images.read(key)
        # Leave room for the multipart envelope around the file.
        fitted, name = await asyncio.to_thread(fit_image, data, max(size_limit - 64 * 1024, 64 * 1024), stem)
        spoiler = mode is NsfwMode.SPOILER
        return discord.File(io.BytesIO(fitted), filename=name, spoiler=spoiler), (
            render.SPOILER_NOTE if spoiler else None
        )

    async def prepare(self, job: Job, *, owner: int, guild: Guild | None, size_limit: int) -> Prepared:
        """The result message of an ended job: text, file and buttons."""
        spec = JobSpec.from_dict(job.params)
        if job.status == JobStatus.FAILED:
            refunded = job.cost
            return Prepared(
                render.failed_text(
                    job.prompt, user_id=owner, error=job.error, refunded=refunded, job_id=job.id
                ),
                [],
                None,
            )
        images: Sequence[Image] = job.images
        grid = _is_grid(job) and len(images) > 1 and job.grid_storage_key is not None
        key = job.grid_storage_key if grid else images[0].storage_key if images else None
        files: list[discord.File] = []
        note: str | None = None
        if key is not None:
            file, note = await self.image_file(
                key,
                stem=f"{'grid' if grid else 'image'}_{str(job.id)[:8]}",
                flagged=any(img.nsfw for img in images),
                policy=guild.nsfw_policy if guild is not None else None,
                in_dm=job.guild_id is None,
                channel_id=job.channel_id,
                size_limit=size_limit,
            )
            if file is not None:
                files.append(file)
        buttons = (
            render.grid_buttons()
            if grid
            else render.single_image_buttons(
                images[0].index if images else 0, public=bool(images and images[0].public)
            )
        )
        content = render.result_text(
            spec,
            user_id=owner,
            kind=job.kind,
            variant=job.variant,
            parent_index=job.parent_index,
            model=job.model,
            job_id=job.id,
            note=note,
        )
        return Prepared(content, files, build_view([(job.id, b) for b in buttons]))

    # -- posting ---------------------------------------------------------------------------

    async def _post(
        self, job: Job, owner: int, prepared: Prepared, ack: AckRecord | None
    ) -> tuple[Outcome, int, int] | None:
        primary = job.interaction_id is not None
        if token_alive(job):
            assert job.interaction_token is not None
            try:
                if primary:
                    data = await self._retry(
                        lambda: self._edit_original(job.interaction_token or "", prepared)
                    )
                    return Outcome.EDITED, int(data["channel_id"]), int(data["id"])
                return await self._post_new(
                    job, Outcome.FOLLOWUP, lambda: self._followup(job.interaction_token or "", prepared)
                )
            except discord.HTTPException as exc:
                if exc.status not in (401, 403, 404):
                    raise
                # Token expired early, or the acknowledgement was deleted: post in the channel.
                log.info(
                    "job %s: interaction webhook refused (%s); posting in the channel", job.id, exc.status
                )
        if job.channel_id is None:
            return None
        channel_id = job.channel_id
        try:
            return await self._post_new(
                job, Outcome.CHANNEL, lambda: self._channel_message(job, owner, prepared, ack)
            )
        except discord.HTTPException as exc:
            if exc.status in (403, 404):
                log.warning("job %s: cannot post in channel %s (%s)", job.id, channel_id, exc.status)
                return None
            raise

    async def _post_new(
        self, job: Job, outcome: Outcome, send: Callable[[], Awaitable[dict[str, Any]]]
    ) -> tuple[Outcome, int, int]:
        marker = f"{_KEY}posting:{job.id}"
        if await self.redis.exists(marker):
            found = await self._find_posted(job)
            if found is not None:
                return Outcome.FOUND, found[0], found[1]
        await self.redis.set(marker, "1", ex=int(SWEEP_WINDOW.total_seconds()))
        data = await self._retry(send)
        return outcome, int(data["channel_id"]), int(data["id"])

    async def _find_posted(self, job: Job) -> tuple[int, int] | None:
        """A message of ours in the job's channel whose buttons name this job (a lost id)."""
        if job.channel_id is None:
            return None
        channel = self.bot.get_partial_messageable(job.channel_id)
        needle = str(job.id)
        try:
            async for message in channel.history(limit=100):
                if message.author.id != self.bot.application_id and message.author != self.bot.user:
                    continue
                for row in message.components:
                    for child in getattr(row, "children", []):
                        if needle in (getattr(child, "custom_id", None) or ""):
                            return message.channel.id, message.id
                if needle in message.content:
                    return message.channel.id, message.id
        except discord.HTTPException:
            log.info("job %s: cannot read channel history to look for a lost message", job.id)
        return None

    async def _retry(self, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        for delay in (*RETRY_DELAYS, None):
            try:
                return await send()
            except discord.HTTPException as exc:
                transient = exc.status == 429 or exc.status >= 500
                if not transient or delay is None:
                    raise
                log.info("Discord answered %s; retrying in %.0fs", exc.status, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _edit_original(self, token: str, prepared: Prepared) -> dict[str, Any]:
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            webhook_id=self.bot.application_id,
            webhook_token=token,
        )
        for file in prepared.files:
            file.reset()
        with handle_message_parameters(
            content=prepared.content,
            attachments=prepared.files,
            embeds=[],
            view=prepared.view,
            allowed_mentions=discord.AllowedMentions(users=True),
        ) as params:
            return await self._request(route, params)

    async def _followup(self, token: str, prepared: Prepared) -> dict[str, Any]:
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=self.bot.application_id,
            webhook_token=token,
        )
        for file in prepared.files:
            file.reset()
        with handle_message_parameters(
            content=prepared.content,
            files=prepared.files,
            view=prepared.view,
            allowed_mentions=discord.AllowedMentions(users=True),
        ) as params:
            return await self._request(route, params, params={"wait": "true"})

    async def _request(self, route: Route, message: Any, **kwargs: Any) -> dict[str, Any]:
        if message.files:
            result = await self.bot.http.request(route, files=message.files, form=message.multipart, **kwargs)
        else:
            result = await self.bot.http.request(route, json=message.payload, **kwargs)
        assert isinstance(result, dict)
        return result

    async def _channel_message(
        self, job: Job, owner: int, prepared: Prepared, ack: AckRecord | None
    ) -> dict[str, Any]:
        assert job.channel_id is not None
        channel = self.bot.get_partial_messageable(job.channel_id)
        reference = (
            discord.MessageReference(
                message_id=ack.message_id, channel_id=ack.channel_id, fail_if_not_exists=False
            )
            if ack is not None and ack.channel_id == job.channel_id
            else None
        )
        for file in prepared.files:
            file.reset()
        # Only what is there is passed: Messageable.send reads discord.utils.MISSING as a
        # reference (and fails) and its types accept no None.
        optional: dict[str, Any] = {}
        if reference is not None:
            optional["reference"] = reference
        if prepared.view is not None:
            optional["view"] = prepared.view
        message = await channel.send(
            content=prepared.content,
            files=prepared.files,
            allowed_mentions=discord.AllowedMentions(users=True, replied_user=True),
            **optional,
        )
        return {"channel_id": message.channel.id, "id": message.id}


def _is_grid(job: Job) -> bool:
    try:
        return recipe(job.kind, job.variant).grid
    except UnknownRecipe:
        return True
