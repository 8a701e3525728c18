"""Fixtures that run real processes: a Celery worker on the real Redis and Postgres.

The worker of a module serves a model whose name is unique to this pytest process, so its
queues (``render.<lane>.<model>``) are its own, on the Redis database that
``tests/conftest.py`` claimed for this run. Jobs are committed rows (the worker is another
process and must see them) in a database made for the module and dropped after it.

The broker is that Redis, or RabbitMQ with ``IMAGINARIUM_TEST_BROKER=rabbitmq`` (``.ci/run``
runs the suite on both; Redis still carries leases, presence and progress). Modules marked
``own_broker`` choose theirs themselves (a broker they kill, both brokers side by side).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.spec import JobKind, JobSpec, Lane, LoraRef, PromptPart
from core.tasks import render_queue
from db.migrate import drop_database
from db.models import CreditLedger, Image, Job, JobStatus, LedgerKind, User
from db.repositories import create_job, grant_credits, upsert_user
from db.session import create_engine, create_session_factory
from gpu_worker.celery_app import make_celery
from gpu_worker.tasks import make_publisher
from gpu_worker.tiny_model import write_tiny_model
from gpu_worker.worker_process import WorkerProcess
from tests.conftest import create_database, database_url_for, run_async

BROKER_ENV = "IMAGINARIUM_TEST_BROKER"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def on_rabbitmq() -> bool:
    """Whether this run's workers use RabbitMQ (:data:`BROKER_ENV`); fails on an unknown name."""
    name = os.environ.get(BROKER_ENV, "redis").strip().lower() or "redis"
    assert name in ("redis", "rabbitmq"), f"{BROKER_ENV} must be redis or rabbitmq, not {name!r}"
    if name == "rabbitmq":  # asked for by name: a missing broker is a failure, not a skip
        assert rabbitmq_up(), f"{BROKER_ENV}=rabbitmq, but nothing answers on 127.0.0.1:5672"
    return name == "rabbitmq"


def broker_url_for(redis_url: str) -> str:
    """The broker of this run's workers: RabbitMQ (:func:`on_rabbitmq`) or the given Redis."""
    return RABBITMQ_URL if on_rabbitmq() else redis_url


def rabbitmq_up() -> bool:
    """Whether RabbitMQ answers on 127.0.0.1:5672."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


def delete_rabbitmq_queues(queues: list[str]) -> None:
    """Remove a module's queues from RabbitMQ (they are its own, named after its model)."""
    from kombu import Connection

    with Connection(RABBITMQ_URL) as conn:
        channel = conn.channel()
        for queue in queues:
            try:
                channel.queue_delete(queue)
            except Exception:  # not there: the channel closes on a failed command
                channel = conn.channel()


TERMINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
JOB_SIZE = 32
JOB_STEPS = 2


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weights SD 1.5 pipeline as a diffusers folder."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"), "sd15", seed=0)


@pytest.fixture(scope="module")
def model_name() -> str:
    """A model name (and so queue names) no other test run uses."""
    return f"itest-{os.getpid()}-{secrets.token_hex(3)}"


def write_models_file(directory: Path, model_dir: Path, model_name: str, extra: str = "") -> Path:
    """A models.toml in ``directory`` with the tiny model under ``model_name``, sized for fast
    renders; ``extra`` adds lines to its entry (a module's own settings)."""
    path = directory / "models.toml"
    path.write_text(
        f'default = "{model_name}"\n\n'
        f"[models.{model_name}]\n"
        'family = "sd15"\n'
        f'path = "{model_dir}"\n'
        f"pixel_budget = {JOB_SIZE * JOB_SIZE}\n"
        "size_step = 16\n"
        f"steps = {JOB_STEPS}\n"
        'sampler = "Euler"\n' + extra
    )
    return path


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, model_name: str) -> Path:
    """A models.toml with the tiny model under :func:`model_name`, sized for fast renders."""
    return write_models_file(tmp_path_factory.mktemp("config"), tiny_model_dir, model_name)


@pytest.fixture(scope="module")
def module_db_url(db_template: str) -> Iterator[str]:
    """A migrated database for this module's worker, dropped after the module."""
    name = f"imaginarium_test_{os.getpid()}_it_{secrets.token_hex(3)}"
    run_async(create_database(name, template=db_template))
    url = database_url_for(name)
    yield url
    run_async(drop_database(url))


@pytest.fixture(scope="module")
def module_redis_url(_redis_test_db: tuple[str, int]) -> str:
    """This run's Redis database. Not flushed while the worker lives: it holds the queues."""
    base, number = _redis_test_db
    return f"{base}/{number}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker's data directory (its local image store lives here)."""
    return tmp_path_factory.mktemp("data")


def worker_env(
    *, db_url: str, redis_url: str, data_dir: Path, models_file: Path, **extra: str
) -> dict[str, str]:
    """The environment of a test worker: explicit URLs, test faults honoured."""
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "BROKER_URL": broker_url_for(redis_url),
        "IMAGINARIUM_DATA_DIR": str(data_dir),
        "MODELS_FILE": str(models_file),
        "IMAGE_STORE": "local",
        "IMAGINARIUM_TEST_FAULTS": "1",
        "LOG_LEVEL": "INFO",
        # The test machines have few cores shared by several runs.
        "OMP_NUM_THREADS": "2",
    }
    env.update(extra)
    return env


@dataclass
class Jobs:
    """Creates, publishes and watches jobs of the module's worker."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    celery: Celery
    model: str
    loop: asyncio.AbstractEventLoop

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def create(
        self,
        prompt: str = "a red circle",
        *,
        seed: int = 11,
        cost: int = 2,
        credits: int = 10,
        lane: Lane = Lane.FAST,
        kind: JobKind = JobKind.IMAGINE,
        variant: str | None = None,
        parent: tuple[uuid.UUID, int] | None = None,
        loras: tuple[LoraRef, ...] = (),
    ) -> tuple[uuid.UUID, int]:
        """A committed queued job (an imagine unless ``kind`` says otherwise; ``parent`` is the
        (job, image index) it starts from) of a new user with ``credits``; returns (job id, user id)."""

        async def go() -> tuple[uuid.UUID, int]:
            async with self.sessions() as session, session.begin():
                user = await upsert_user(
                    session=session, discord_id=int.from_bytes(secrets.token_bytes(6), "big")
                )
                await grant_credits(session=session, user_id=user.id, amount=credits)
                spec = JobSpec(
                    parts=(PromptPart(prompt),), seed=seed, width=JOB_SIZE, height=JOB_SIZE, steps=JOB_STEPS,
                    loras=loras,
                )
                new = await create_job(
                    session=session,
                    user_id=user.id,
                    spec=spec,
                    model=self.model,
                    lane=lane,
                    cost=cost,
                    kind=kind,
                    variant=variant,
                    parent_id=parent[0] if parent else None,
                    parent_index=parent[1] if parent else None,
                )
                return new.job.id, user.id

        return self.run(go())

    def publish(self, job_id: uuid.UUID, lane: Lane = Lane.FAST) -> None:
        """Send render(job_id) to the queue of the lane and model, as the bot does."""
        make_publisher(self.celery)(job_id, lane.value, self.model)

    def wait(self, job_id: uuid.UUID, worker: WorkerProcess, timeout: float = 180.0) -> Job:
        """The job once it reached a terminal state (fails with the worker's log otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.status in TERMINAL:
                return job
            assert worker.process is not None and worker.process.poll() is None, (
                f"worker died:\n{worker.log_tail()}"
            )
            assert time.monotonic() < deadline, f"job {job_id} still {job.status.value}:\n{worker.log_tail()}"
            time.sleep(0.2)

    def execute(self, statement: str, **params: object) -> None:
        """Run one SQL statement and commit (to set up states that take time to reach)."""

        async def go() -> None:
            async with self.sessions() as session, session.begin():
                await session.execute(text(statement), params)

        self.run(go())

    def job(self, job_id: uuid.UUID) -> Job:
        async def go() -> Job:
            async with self.sessions() as session:
                return (await session.scalars(select(Job).where(Job.id == job_id))).one()

        return self.run(go())

    def images(self, job_id: uuid.UUID) -> list[Image]:
        async def go() -> list[Image]:
            async with self.sessions() as session:
                return list(
                    await session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index))
                )

        return self.run(go())

    def ledger(self, job_id: uuid.UUID) -> list[LedgerKind]:
        async def go() -> list[LedgerKind]:
            async with self.sessions() as session:
                stmt = (
                    select(CreditLedger.kind).where(CreditLedger.job_id == job_id).order_by(CreditLedger.id)
                )
                return list(await session.scalars(stmt))

        return self.run(go())

    def balance(self, user_id: int) -> int:
        async def go() -> int:
            async with self.sessions() as session:
                return int((await session.scalar(select(User.balance).where(User.id == user_id))) or 0)

        return self.run(go())


@pytest.fixture(scope="module")
def jobs(module_db_url: str, module_redis_url: str, model_name: str) -> Iterator[Jobs]:
    loop = asyncio.new_event_loop()
    engine = create_engine(module_db_url)
    celery = make_celery(broker_url_for(module_redis_url))
    yield Jobs(engine, create_session_factory(engine), celery, model_name, loop)
    celery.close()
    loop.run_until_complete(engine.dispose())
    loop.close()
    if on_rabbitmq():
        delete_rabbitmq_queues([render_queue(lane.value, model_name) for lane in Lane])


@pytest.fixture(scope="module")
def metrics_port() -> int:
    """A free port for the module's worker's Prometheus metrics."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def worker_settings() -> dict[str, str]:
    """Further environment of the module's :func:`worker` (a module overrides it)."""
    return {}


@pytest.fixture(scope="module")
def worker(
    module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str, metrics_port: int,
    worker_settings: dict[str, str],
) -> Iterator[WorkerProcess]:
    """A real ``imaginarium worker`` (prefork, one child) serving the fast lane of the module's
    model, with its metrics on :func:`metrics_port`."""
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=models_file,
        METRICS_PORT=str(metrics_port), **worker_settings,
    )
    with WorkerProcess(
        env=env, models=[model_name], lanes=["fast"], extra_args=["--reconcile-every", "0"]
    ) as proc:
        yield proc
    redis.Redis.from_url(module_redis_url).flushdb()
