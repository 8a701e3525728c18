"""The bot: an ``AutoShardedBot`` that takes its dependencies in its constructor.

``setup_hook`` loads the feature cogs, registers the persistent buttons (``DynamicItem``
classes, dispatched by custom id, so buttons on old messages work after a restart), syncs
the slash commands when they changed, and starts the background parts: delivery of ended
jobs, the progress relay, and the outbox drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.background import stop_tasks
from bot.cogs.settings import SETTINGS_ITEMS
from bot.context import BotContext, ImageReader
from bot.delivery import Delivery
from bot.drawing import EditorConfig, WebRequestRelay
from bot.progress import ProgressRelay
from bot.queue_refresh import QueueRefresher
from bot.replies import FAILURE_MESSAGE, report_error
from bot.services.checks import BannedWordsCache
from bot.services.jobs import record_queue_depth
from bot.services.publish import RenderPublisher
from bot.services.workers import WorkerDirectory, fail_unserved_jobs
from bot.views.buttons import JobButton, RegionSelect
from bot.views.described import DESCRIBED_ITEMS
from core.models import ModelCatalog
from core.text import unstorable
from db.repositories.gallery_search import warn_if_search_is_text_only

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.imagine", "bot.cogs.jobs", "bot.cogs.settings", "bot.cogs.training")
OPTIONAL_EXTENSIONS = ("bot.cogs.admin", "bot.cogs.gallery")
"""Loaded when present (they are built separately)."""
OUTBOX_INTERVAL_S = 5.0
UNSERVED_CHECK_S = 30.0
"""Seconds between two looks for queued jobs whose model no worker serves (bot.services.workers)."""


class ImaginariumTree(app_commands.CommandTree["ImaginariumBot"]):
    """The command tree with the one global error handler for slash commands, and the one
    check of every command's words: text no database can store (:mod:`core.text`) is refused
    before any command runs, with a message that names it (nothing charged)."""

    async def interaction_check(self, interaction: discord.Interaction[ImaginariumBot], /) -> bool:
        bad = next(filter(None, map(unstorable, _option_texts(interaction.data))), None)
        if bad is None:
            return True
        if interaction.type is discord.InteractionType.autocomplete:
            await interaction.response.autocomplete([])
            return False
        raise app_commands.CheckFailure(
            f"Your command holds an unusable character ({bad}); remove it and try again. "
            "Nothing was charged."
        )

    async def on_error(
        self, interaction: discord.Interaction[ImaginariumBot], error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(error, app_commands.CheckFailure):
            message = str(error) or "You cannot use this command here."
        else:
            log.error(
                "command %r failed", interaction.command and interaction.command.name, exc_info=original
            )
            message = FAILURE_MESSAGE
        await report_error(interaction, message)


def _option_texts(data: Any) -> list[str]:
    """Every string value among a command interaction's options, subcommands' included."""
    found: list[str] = []
    options = list((data or {}).get("options") or ())
    while options:
        option = options.pop()
        if isinstance(option.get("value"), str):
            found.append(option["value"])
        options.extend(option.get("options") or ())
    return found


class ImaginariumBot(commands.AutoShardedBot):
    """The Discord bot.

    Args:
        sessions: database session factory.
        publisher: sends render tasks to the broker.
        catalog: the models on offer.
        redis: progress pub/sub, delivery locks and markers.
        images: reads stored images for posting.
        database_url: for the LISTEN connection of delivery.
        sweep_interval: seconds between delivery sweeps.
        sync_commands: ``"auto"`` syncs slash commands when they changed since the last
            sync, ``"always"`` on every start, ``"never"`` not at all.
        editor: the web gallery's mask editor (its URL and the shared secret); None: no
            "Draw…" in the region menu.
        image_hosts: the hosts workers fetch image links from (``IMAGE_URL_HOSTS``), so that a
            link to another is refused before charging; None: any host.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        publisher: RenderPublisher,
        catalog: ModelCatalog,
        redis: Redis,
        images: ImageReader,
        database_url: str,
        sweep_interval: float = 30.0,
        sync_commands: str = "auto",
        shard_count: int | None = None,
        editor: EditorConfig | None = None,
        image_hosts: frozenset[str] | None = None,
    ) -> None:
        intents = discord.Intents.default()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=ImaginariumTree,
            shard_count=shard_count,
            help_command=None,
            # Nobody is pinged unless a message says whom: a prompt's words (<@id>, @everyone)
            # never ping; a delivered result pings its owner alone (bot.delivery.posting).
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.sessions = sessions
        self.publisher = publisher
        self.catalog = catalog
        self.redis = redis
        self.images = images
        self.banned_words = BannedWordsCache()
        self.sync_commands = sync_commands
        self.delivery = Delivery(
            bot=self,
            sessions=sessions,
            redis=redis,
            images=images,
            database_url=database_url,
            sweep_interval=sweep_interval,
        )
        self.progress = ProgressRelay(bot=self, sessions=sessions, redis=redis, delivery=self.delivery)
        self.workers = WorkerDirectory(redis)
        self.queue_refresh = QueueRefresher(bot=self, sessions=sessions, redis=redis, delivery=self.delivery)
        self.editor = editor
        self.image_hosts = image_hosts
        self.web_requests = WebRequestRelay(bot=self)
        self._outbox_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        for name in EXTENSIONS:
            await self.load_extension(name)
        for name in OPTIONAL_EXTENSIONS:
            with contextlib.suppress(commands.ExtensionNotFound):
                await self.load_extension(name)
        self.add_dynamic_items(JobButton, RegionSelect, *SETTINGS_ITEMS, *DESCRIBED_ITEMS)
        await self._sync_commands()
        async with self.sessions() as session:
            # One warning at start when the gallery's search by meaning is off (no pgvector).
            await warn_if_search_is_text_only(session=session)
        await self.delivery.start()
        await self.progress.start()
        await self.queue_refresh.start()
        await self.web_requests.start()
        self._outbox_task = asyncio.create_task(self._drain_outbox(), name="outbox-drain")

    async def close(self) -> None:
        if self._outbox_task is not None:
            await stop_tasks([self._outbox_task])
        await self.web_requests.close()
        await self.progress.close()
        await self.queue_refresh.close()
        await self.delivery.close()
        await super().close()

    async def _sync_commands(self) -> None:
        if self.sync_commands == "never":
            return
        payload = json.dumps([c.to_dict(self.tree) for c in self.tree.get_commands()], sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        key = f"imaginarium:commands-synced:{self.application_id}"
        stored = await self.redis.get(key)
        if isinstance(stored, bytes):
            stored = stored.decode()
        if self.sync_commands == "auto" and stored == digest:
            return
        # Discord rate-limits command syncs; only send them when they changed.
        synced = await self.tree.sync()
        await self.redis.set(key, digest)
        log.info("synced %d slash commands", len(synced))

    async def _drain_outbox(self) -> None:
        last_unserved_check = time.monotonic()
        while True:
            await asyncio.sleep(OUTBOX_INTERVAL_S)
            try:
                await self.publisher.drain_outbox(sessions=self.sessions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox drain failed")
            if time.monotonic() - last_unserved_check >= UNSERVED_CHECK_S:
                last_unserved_check = time.monotonic()
                try:
                    await record_queue_depth(self.sessions)
                    await fail_unserved_jobs(self.sessions, self.workers)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("checking for queued jobs no worker serves failed")

    async def on_ready(self) -> None:
        log.info("ready as %s in %d servers (%d shards)", self.user, len(self.guilds), self.shard_count or 1)


def _handlers_see(bot: ImaginariumBot) -> BotContext:
    # Type-checked only: the bot offers everything its handlers use (bot.context).
    return bot
