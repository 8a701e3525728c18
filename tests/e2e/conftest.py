"""End-to-end fixtures: real processes around a fake Discord.

The fake Discord runs in the test process; the bot runs as ``imaginarium bot`` and the GPU
worker as ``imaginarium worker`` (the built-in tiny model), both on a database and a Redis
database of this test's own. Tests talk to the bot only as users do (slash commands, clicks)
and read the database only to check money and job states.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import repositories as repo
from db.models import Job
from db.session import create_engine, create_session_factory
from gpu_worker.worker_process import WorkerProcess
from tests.fake_discord import FakeDiscord, FakeGuild, InteractionRecord, make_guild

pytestmark = pytest.mark.integration


class BotProcess:
    """``imaginarium bot`` in a child process, stopped with SIGTERM (a clean shutdown)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "imaginarium", "bot", "--sweep-every", "2"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def stop(self, timeout: float = 20.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.process = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Wait until the bot listens for job events (it then delivers what ends)."""
        deadline = time.monotonic() + timeout
        while "listening for job events" not in self.log_tail(10**7):
            if self.process is None or self.process.poll() is not None:
                raise AssertionError(f"the bot exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not start listening:\n{self.log_tail()}")
            time.sleep(0.1)


@dataclass
class Deployment:
    """A fake Discord, the bot process, a worker process (started on demand) and the database."""

    fake: FakeDiscord
    bot: BotProcess
    env: dict[str, str]
    sessions: async_sessionmaker[AsyncSession]
    tmp: Path
    worker: WorkerProcess | None = None

    async def start_bot(self) -> None:
        self.bot.start()
        await self.fake.wait_ready(timeout=60, commands=True)
        await asyncio.to_thread(self.bot.wait_listening)

    async def restart_bot(self) -> None:
        await asyncio.to_thread(self.bot.stop)
        await self.fake.wait_for(
            lambda: not self.fake.gateway.shard_sessions(), timeout=30, what="the bot to leave"
        )
        # Ignore the first log's "listening" line: wait for the new process's own.
        self.bot.log_path = self.tmp / f"bot-{time.monotonic_ns()}.log"
        await self.start_bot()

    async def start_worker(
        self, *, faults: bool = False, models: tuple[str, ...] = ("tiny",), simulated_s: float | None = None
    ) -> WorkerProcess:
        """Start a worker for the tiny model (or ``models``); ``faults`` honours ``fault:`` markers
        in prompts; ``simulated_s`` simulates its GPU (placeholder images after that many seconds),
        for tests about the bot and the queue rather than the render."""
        env = {**self.env, "IMAGINARIUM_TEST_FAULTS": "1"} if faults else dict(self.env)
        if simulated_s is not None:
            from gpu_worker.simulated import SECONDS_ENV

            env[SECONDS_ENV] = str(simulated_s)
        worker = WorkerProcess(env=env, models=list(models), log_path=self.tmp / "worker.log")
        worker.start()
        try:
            await asyncio.to_thread(worker.wait_ready, 300)
        except BaseException:
            worker.close()
            raise
        self.worker = worker
        return worker

    async def grant(self, user: str, amount: int) -> None:
        async with self.sessions() as session, session.begin():
            found = await repo.upsert_user(session=session, discord_id=self.fake.user(user).id)
            await repo.grant_credits(session=session, user_id=found.id, amount=amount)

    async def balance(self, user: str) -> int:
        async with self.sessions() as session:
            found = await repo.upsert_user(session=session, discord_id=self.fake.user(user).id)
            await session.refresh(found)
            return found.balance

    async def delivered(self, interaction: InteractionRecord, timeout: float = 30.0) -> Job:
        """The interaction's job once its result message id is stored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.job_of(interaction)
            if job.result_message_id is not None:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"interaction {interaction.id} was not delivered:\n{self.bot.log_tail()}")

    async def job_of(self, interaction: InteractionRecord, timeout: float = 15.0) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.sessions() as session:
                job = await repo.get_job_by_interaction(session=session, interaction_id=interaction.id)
            if job is not None:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"no job for interaction {interaction.id}:\n{self.bot.log_tail()}")


def e2e_guild(members: int = 0) -> FakeGuild:
    names = ("alice", "bob", *(f"user{i:02d}" for i in range(members)))
    return make_guild(members=names, admins=("bob",))


@pytest.fixture
def guild() -> FakeGuild:
    return e2e_guild()


@pytest.fixture
def deployment_env() -> dict[str, str]:
    """More settings for the bot and worker (a module overrides this fixture)."""
    return {}


@pytest.fixture
async def deployment(
    fresh_db_url: str, redis_url: str, tmp_path: Path, guild: FakeGuild, deployment_env: dict[str, str]
) -> AsyncIterator[Deployment]:
    """Everything started except the worker; the bot is connected and listening."""
    engine: AsyncEngine = create_engine(fresh_db_url, poolclass=pool.NullPool)
    # The random-weights model renders in a fraction of the shipped one's time; the flows
    # under test are the same for every model.
    models_file = tmp_path / "models.toml"
    models_file.write_text('default = "tiny"\n')
    async with FakeDiscord([guild]) as fake:
        env = {
            **fake.bot_env(),
            "DATABASE_URL": fresh_db_url,
            "REDIS_URL": redis_url,
            "BROKER_URL": redis_url,
            "IMAGINARIUM_DATA_DIR": str(tmp_path / "data"),
            "MODELS_FILE": str(models_file),
            # The fake Discord serves attachments (its CDN) on 127.0.0.1.
            "IMAGE_URL_HOSTS": "127.0.0.1",
            "IMAGE_URL_PRIVATE_NETWORKS": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            **deployment_env,
        }
        found = Deployment(
            fake=fake,
            bot=BotProcess(env, tmp_path / "bot.log"),
            env=env,
            sessions=create_session_factory(engine),
            tmp=tmp_path,
        )
        try:
            await found.start_bot()
            yield found
        finally:
            await asyncio.to_thread(found.bot.stop)
            if found.worker is not None:
                await asyncio.to_thread(found.worker.close)
            await engine.dispose()
        assert_no_secret_or_path_leaked(found)


def assert_no_secret_or_path_leaked(d: Deployment) -> None:
    """No token in the logs of the run; no server path or token in any message users saw."""
    secrets = [d.fake.token, *(r.token for r in d.fake.interactions.values())]
    logs = "".join(p.read_text(errors="replace") for p in d.tmp.glob("*.log"))
    for secret in secrets:
        assert secret not in logs, "a token reached a log line"
    paths = [str(d.tmp), str(Path.home()), os.getcwd()]
    for message in d.fake.messages.values():
        for version in [{"content": message.content, "embeds": message.embeds}, *message.history]:
            text = json.dumps({k: version.get(k) for k in ("content", "embeds")}, default=str)
            assert not any(secret in text for secret in secrets), f"a token in message {message.id}"
            assert not any(path in text for path in paths), f"a server path in message {message.id}: {text[:200]}"


@pytest.fixture
def print_report(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test wants printed in the run's output (measured figures)."""
    lines: list[str] = []
    yield lines
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:  # pragma: no cover - without the terminal plugin
            print(line)
