"""Fixtures: a fake Discord, and the demo bot connected to it in this process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.discord_endpoints import configure_endpoints, restore_endpoints
from tests.fake_discord import FakeDiscord
from tests.fake_discord_tests.demo_bot import DemoBot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def demo(fake: FakeDiscord) -> AsyncIterator[DemoBot]:
    """The demo bot, logged in, connected and with its commands synced."""
    previous = configure_endpoints(fake.api_base, fake.gateway_url)
    bot = DemoBot()
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await fake.wait_ready(commands=True)
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        restore_endpoints(previous)
