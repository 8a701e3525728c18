"""The bot in another process (as the e2e tests run it): URLs and token are all it gets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fake_discord import FakeDiscord

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@asynccontextmanager
async def bot_process(fake: FakeDiscord, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m tests.fake_discord_tests.demo_bot`` pointed at the fake; SIGTERM on exit."""
    env = {**os.environ, **fake.bot_env(), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fake_discord_tests.demo_bot",
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_bot_in_another_process_and_buttons_survive_a_restart(
    fake: FakeDiscord, tmp_path: Path
) -> None:
    log = tmp_path / "bot.log"
    async with bot_process(fake, log) as first:
        await fake.wait_ready(timeout=60, commands=True)
        ping = await fake.slash("ping", {"text": "from afar"})
        message = await ping.wait_for_followup()
        assert message.content == "pong from afar"
        assert message.attachments[0].filename == "pong.png"
        click = await fake.click(message, "demo:v1:again:1")
        await fake.wait_for(lambda: message.content == "pong #2", what="the edit")
        assert click.response is not None and click.response.type == 7
        assert click.ack_latency is not None
    assert first.returncode == 0, log.read_text()
    await fake.wait_for(lambda: fake.gateway.active() is None, what="the first bot to disconnect")

    async with bot_process(fake, log):
        await fake.wait_for(lambda: fake.gateway.identify_count == 2 and fake.gateway.active(), timeout=60)
        # The button posted by the first process works in the second one.
        again = await fake.click(message, "demo:v1:again:2")
        await fake.wait_for(lambda: message.content == "pong #3", what="the edit after the restart")
        assert again.response is not None and again.response.type == 7
    assert fake.internal_errors == []
    assert fake.unhandled_requests == []
