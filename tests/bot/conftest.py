"""Fixtures for the bot's service tests: the real database, a real broker, the built-in model."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from PIL import Image as PILImage
from redis.asyncio import Redis
from sqlalchemy import func, pool, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import ImaginariumBot
from bot.discord_endpoints import configure_endpoints, restore_endpoints
from bot.services.publish import RenderPublisher, make_publisher
from bot.services.requests import Requester
from core.models import ModelCatalog
from core.store import LocalImageReader
from core.tasks import JOB_EVENTS_CHANNEL
from db import repositories as repo
from db.models import Job
from db.session import create_engine, create_session_factory
from tests.bot.discord_harness import tiny_default_catalog
from tests.fake_discord import FakeDiscord, InteractionRecord

_ids = itertools.count(os.getpid() * 1_000_000 + 500_000)


def next_id() -> int:
    """A Discord id (user, guild, interaction) that no other test uses."""
    return next(_ids)


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    """The built-in models with the tiny one (64x64, 4 steps) as the default."""
    return tiny_default_catalog(tmp_path)


@pytest.fixture
def publisher(redis_url: str) -> Iterator[RenderPublisher]:
    """A publisher on the test run's Redis database (a real broker)."""
    celery = make_publisher(redis_url)
    yield RenderPublisher(celery)
    celery.close()


class Broker:
    """Reads what was published to the broker (kombu keeps each queue in a Redis list)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def job_ids(self, queue: str) -> list[uuid.UUID]:
        ids = []
        for raw in self.client.lrange(queue, 0, -1):
            headers = json.loads(raw)["headers"]
            ids.append(uuid.UUID(ast.literal_eval(headers["argsrepr"])[0]))
        return ids


@pytest.fixture
def broker(redis_url: str) -> Iterator[Broker]:
    found = Broker(redis_url)
    yield found
    found.client.close()


def requester(user_id: int, *, guild_id: int | None = None, roles: tuple[int, ...] = ()) -> Requester:
    """A request from ``user_id`` through a new interaction."""
    return Requester(
        user_id=user_id,
        guild_id=guild_id,
        channel_id=next_id(),
        role_ids=roles,
        interaction_id=next_id(),
        interaction_token=f"token-{uuid.uuid4().hex}",
        interaction_created_at=datetime.now(UTC),
    )


async def give_credits(sessions: async_sessionmaker[AsyncSession], discord_id: int, amount: int) -> None:
    async with sessions() as session, session.begin():
        user = await repo.upsert_user(session=session, discord_id=discord_id)
        await repo.grant_credits(session=session, user_id=user.id, amount=amount)


async def balance_of(sessions: async_sessionmaker[AsyncSession], discord_id: int) -> int:
    async with sessions() as session:
        user = await repo.upsert_user(session=session, discord_id=discord_id)
        await session.refresh(user)
        return user.balance


@pytest.fixture
async def user_id(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[int]:
    """A Discord user with 10 credits."""
    discord_id = next_id()
    await give_credits(session_factory, discord_id, 10)
    yield discord_id


# --------------------------------------------------------------------------- a bot on a fake Discord


def png(size: tuple[int, int] = (64, 64), *, seed: int = 0, noise: bool = False) -> bytes:
    """A PNG; ``noise`` makes it incompressible (for upload-limit tests)."""
    image = (
        PILImage.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
        if noise
        else PILImage.new("RGB", size, ((seed * 40) % 256, 90, 160))
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def store_image(root: Path, data: bytes) -> str:
    """Put an image in a local store the way the worker does; return its key."""
    key = hashlib.sha256(data).hexdigest() + ".png"
    path = LocalImageReader(root).path_of(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


@dataclass
class BotHarness:
    """An :class:`~bot.app.ImaginariumBot` in this process, connected to a fake Discord."""

    fake: FakeDiscord
    bot: ImaginariumBot
    sessions: async_sessionmaker[AsyncSession]
    store: Path

    async def finish(
        self,
        job_id: uuid.UUID,
        *,
        count: int = 4,
        nsfw: bool = False,
        size: tuple[int, int] = (64, 64),
        noise: bool = False,
    ) -> None:
        """Play the worker: store images (and a grid), mark the job done, NOTIFY."""
        images = []
        for index in range(count):
            key = store_image(self.store, png(size, seed=index, noise=noise))
            images.append(
                repo.NewImage(
                    index=index,
                    seed=index,
                    storage_key=key,
                    width=size[0],
                    height=size[1],
                    sha256="0" * 64,
                    nsfw=nsfw,
                )
            )
        grid_key = None
        if count > 1:
            grid_key = store_image(self.store, png((size[0] * 2, size[1] * 2), seed=9, noise=noise))
        async with self.sessions() as session, session.begin():
            await repo.claim_job(session=session, job_id=job_id)
            await repo.finish_job(session=session, job_id=job_id, images=images, grid_storage_key=grid_key)
            await session.execute(select(func.pg_notify(JOB_EVENTS_CHANNEL, str(job_id))))

    async def fail(self, job_id: uuid.UUID, error: str = "the GPU ran out of memory") -> None:
        async with self.sessions() as session, session.begin():
            await repo.claim_job(session=session, job_id=job_id)
            await repo.fail_job(session=session, job_id=job_id, error=error)
            await session.execute(select(func.pg_notify(JOB_EVENTS_CHANNEL, str(job_id))))

    async def job(self, job_id: uuid.UUID) -> Job:
        async with self.sessions() as session:
            found = await repo.get_job(session=session, job_id=job_id, with_images=True)
            assert found is not None
            return found

    async def delivered(self, job_id: uuid.UUID, timeout: float = 10.0) -> Job:
        """The job once its result message id is stored (delivery has ended)."""
        for _ in range(int(timeout / 0.05)):
            job = await self.job(job_id)
            if job.result_message_id is not None and not await self.bot.redis.exists(
                f"imaginarium:deliver-lock:{job_id}"
            ):
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} was not delivered within {timeout:.0f} s")

    async def job_of(self, interaction: InteractionRecord) -> Job:
        """The job an interaction queued (waits until the bot has created it)."""

        async def find() -> Job | None:
            async with self.sessions() as session:
                return await repo.get_job_by_interaction(session=session, interaction_id=interaction.id)

        for _ in range(100):
            job = await find()
            if job is not None:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"no job was created for interaction {interaction.id}")


@pytest.fixture
async def harness(
    fresh_db_url: str, redis_url: str, tmp_path: Path, catalog: ModelCatalog
) -> AsyncIterator[BotHarness]:
    """The bot, logged in to a fresh fake Discord, listening for job events (own database)."""
    db_url = fresh_db_url
    async with FakeDiscord() as fake:
        previous = configure_endpoints(fake.api_base, fake.gateway_url)
        engine = create_engine(db_url, poolclass=pool.NullPool)
        sessions = create_session_factory(engine)
        celery = make_publisher(redis_url)
        redis_client = Redis.from_url(redis_url)
        store = tmp_path / "store"
        store.mkdir()
        bot = ImaginariumBot(
            sessions=sessions,
            publisher=RenderPublisher(celery),
            catalog=catalog,
            redis=redis_client,
            images=LocalImageReader(store),
            database_url=db_url,
            sweep_interval=3600,
        )
        task = asyncio.create_task(bot.start(fake.token))
        try:
            await fake.wait_ready(commands=True)
            await bot.delivery.wait_listening()
            await bot.progress.wait_subscribed()
            yield BotHarness(fake=fake, bot=bot, sessions=sessions, store=store)
        finally:
            await bot.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            await redis_client.aclose()
            celery.close()
            await engine.dispose()
            restore_endpoints(previous)
