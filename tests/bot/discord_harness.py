"""The real bot, in this process, connected to the fake Discord (for the admin and gallery cogs).

The bot gets the test run's database (committed data: the fake's snowflake ids are unique,
so tests do not collide), a Redis database of its own, and an image folder under
``tmp_path``. No GPU worker runs: jobs that a test needs finished are finished in the
database, as a worker would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import ImaginariumBot
from bot.discord_endpoints import configure_endpoints, restore_endpoints
from bot.replies import WITHDRAWN_TEXT
from bot.services.publish import RenderPublisher, make_publisher
from core.models import ModelCatalog
from core.models_file import load_catalog
from core.store import LocalImageReader
from db import repositories as repo
from db.session import create_engine, create_session_factory
from tests.fake_discord import FakeDiscord, FakeMessage, InteractionRecord


@dataclass
class Harness:
    """A fake Discord with the bot connected to it."""

    fake: FakeDiscord
    sessions: async_sessionmaker[AsyncSession]
    images: Path
    database_url: str
    redis_url: str
    bot: ImaginariumBot | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _redis: Redis | None = field(default=None, repr=False)
    _publisher: RenderPublisher | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Start (or restart) the bot and wait until it is connected with its commands."""
        self._redis = Redis.from_url(self.redis_url)
        self._publisher = RenderPublisher(make_publisher(self.redis_url))
        self.bot = ImaginariumBot(
            sessions=self.sessions,
            publisher=self._publisher,
            catalog=tiny_default_catalog(self.images.parent / "data"),
            redis=self._redis,
            images=LocalImageReader(self.images),
            database_url=self.database_url,
            sweep_interval=3600.0,
            sync_commands="always",
        )
        syncs = len(self.fake.command_syncs)
        self._task = asyncio.create_task(self.bot.start(self.fake.token))
        await self.fake.wait_for(
            lambda: (
                len(self.fake.gateway.shard_sessions()) == self.fake.shard_count
                and len(self.fake.command_syncs) > syncs
            ),
            timeout=30,
            what="the bot to connect and sync its commands",
        )

    async def stop(self) -> None:
        """Close the bot as a shutdown would (messages and buttons stay in the fake)."""
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.celery.close)
        if self._redis is not None:
            await self._redis.aclose()
        self.bot, self._task, self._redis, self._publisher = None, None, None, None
        await self.fake.wait_for(
            lambda: not self.fake.gateway.shard_sessions(), timeout=15, what="the bot to leave"
        )

    async def grant(self, user: str, amount: int) -> None:
        async with self.sessions() as session, session.begin():
            found = await repo.upsert_user(session=session, discord_id=self.fake.user(user).id)
            await repo.grant_credits(session=session, user_id=found.id, amount=amount)

    async def answer(self, interaction: InteractionRecord, timeout: float = 15.0) -> FakeMessage:
        """The bot's visible answer: a follow-up, or the filled-in ``@original``.

        A deferral that a refusal resolves for a moment (:data:`bot.replies.WITHDRAWN_TEXT`,
        deleted once the ephemeral reason is out) is not the answer.
        """
        return await self.fake.wait_for(
            lambda: (
                next((m for m in interaction.followups if not m.deleted), None)
                or (
                    interaction.original
                    if interaction.original is not None
                    and not interaction.original.loading
                    and not interaction.original.deleted
                    and interaction.original.content != WITHDRAWN_TEXT
                    else None
                )
            ),
            timeout=timeout,
            what=f"an answer to {interaction.name}",
        )


def tiny_default_catalog(data_dir: Path) -> ModelCatalog:
    """The built-in models with the random-weights ``tiny`` one as the default."""
    data_dir.mkdir(parents=True, exist_ok=True)
    models_file = data_dir / "models.toml"
    models_file.write_text('default = "tiny"\n')
    return load_catalog(models_file, data_dir=data_dir)


@contextlib.asynccontextmanager
async def running_bot(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """The bot connected to a new fake Discord (one guild: alice, and bob the admin)."""
    engine = create_engine(database_url, poolclass=pool.NullPool)
    images = tmp_path / "images"
    images.mkdir(parents=True, exist_ok=True)
    try:
        async with FakeDiscord() as fake:
            previous = configure_endpoints(fake.api_base, fake.gateway_url)
            harness = Harness(
                fake=fake,
                sessions=create_session_factory(engine),
                images=images,
                database_url=database_url,
                redis_url=redis_url,
            )
            try:
                await harness.start()
                yield harness
            finally:
                await harness.stop()
                restore_endpoints(previous)
    finally:
        await engine.dispose()
