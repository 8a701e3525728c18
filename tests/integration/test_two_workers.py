"""Two real workers serving different models (simulated GPUs: the queues, claims and records
are the real ones), on Redis and on RabbitMQ: each job lands on a worker that serves its
model; when one worker is killed, the jobs of a model both serve go to the other, and those
of a model only it served are failed and refunded. Two workers rendering tiny pipelines that
both serve two models: a job goes to the one that has its model warm when it is free, and to
the other (which loads the model) when it is not."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio

from bot.services.workers import WorkerDirectory, fail_unserved_jobs
from core.spec import Lane
from core.tasks import render_queue
from db.models import JobStatus
from gpu_worker.simulated import SECONDS_ENV
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import RABBITMQ_URL, Jobs, delete_rabbitmq_queues, rabbitmq_up, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_broker]


@pytest.fixture(scope="module")
def names(model_name: str) -> dict[str, str]:
    return {"a": f"{model_name}-a", "b": f"{model_name}-b", "shared": f"{model_name}-s"}


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, names: dict[str, str]) -> Path:
    path = tmp_path_factory.mktemp("config3") / "models.toml"
    entries = "".join(f'\n[models.{name}]\nfamily = "sd15"\npath = "{tiny_model_dir}"\n' for name in names.values())
    path.write_text(f'default = "{names["shared"]}"\n{entries}')
    return path


def _start(env: dict[str, str], models: list[str], log: Path) -> WorkerProcess:
    worker = WorkerProcess(env=env, models=models, lanes=("fast",), log_path=log)
    worker.start()
    return worker


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, module_redis_url: str, names: dict[str, str]) -> Iterator[str]:
    """The broker of the two workers (Redis holds presence and progress either way)."""
    if request.param == "redis":
        yield module_redis_url
        return
    if not rabbitmq_up():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    yield RABBITMQ_URL
    delete_rabbitmq_queues([render_queue("fast", model) for model in names.values()])


@pytest.fixture
def on_broker(jobs: Jobs, broker: str) -> Iterator[Jobs]:
    """The module's jobs, published to ``broker``."""
    from gpu_worker.celery_app import make_celery

    celery = make_celery(broker)
    yield dataclasses.replace(jobs, celery=celery)
    celery.close()


def _two_workers(
    env: dict[str, str], data_dir: Path, first: list[str], second: list[str], *, ready_s: float
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers (serving ``first`` and ``second``), ready, and stopped afterwards."""
    one = _start(env, first, data_dir / f"1-{time.monotonic_ns()}.log")
    two = _start(env, second, data_dir / f"2-{time.monotonic_ns()}.log")
    try:
        one.wait_ready(ready_s)
        two.wait_ready(ready_s)
        yield one, two
    finally:
        one.close()
        two.close()


@pytest.fixture
def pair(
    module_db_url: str, module_redis_url: str, data_dir: Path, three_models: Path, names: dict[str, str], broker: str
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=three_models,
        BROKER_URL=broker, **{SECONDS_ENV: "0.3"},
    )
    yield from _two_workers(env, data_dir, [names["a"], names["shared"]], [names["b"], names["shared"]], ready_s=120)


def _queue(jobs: Jobs, model: str, count: int) -> list[tuple[uuid.UUID, int]]:
    made = []
    for n in range(count):
        jobs.model = model
        job_id, user_id = jobs.create(f"{model} {n}", credits=10, cost=2)
        jobs.publish(job_id, Lane.FAST)
        made.append((job_id, user_id))
    return made


def _renderers(pair: tuple[WorkerProcess, WorkerProcess], job_id: uuid.UUID) -> list[WorkerProcess]:
    """The workers that logged rendering a done job (its "done" line follows the record that
    marked it done by moments: the prompt's search embedding comes between, which loads a
    model the first time), waiting up to 20 s for one to have logged it."""
    deadline = time.monotonic() + 20
    while True:
        found = [worker for worker in pair if f"job {job_id} done" in worker.log_tail(10**7)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_job_lands_on_a_worker_that_serves_its_model(
    on_broker: Jobs, pair: tuple[WorkerProcess, WorkerProcess], names: dict[str, str]
) -> None:
    jobs = on_broker
    first, second = pair
    only_a = _queue(jobs, names["a"], 3)
    only_b = _queue(jobs, names["b"], 3)
    shared = _queue(jobs, names["shared"], 6)
    for job_id, _ in [*only_a, *only_b, *shared]:
        assert jobs.wait(job_id, first, timeout=60).status is JobStatus.DONE
    assert all(_renderers(pair, j) == [first] for j, _ in only_a)
    assert all(_renderers(pair, j) == [second] for j, _ in only_b)
    # The shared model's jobs went to both (each worker holds one job at a time), each to one.
    by = [_renderers(pair, j) for j, _ in shared]
    assert all(len(found) == 1 for found in by) and 0 < sum(found == [first] for found in by) < len(shared)


def test_a_killed_workers_jobs_go_to_the_other_or_are_refunded(
    on_broker: Jobs, pair: tuple[WorkerProcess, WorkerProcess], names: dict[str, str], module_redis_url: str,
    broker: str,
) -> None:
    jobs = on_broker
    first, second = pair
    second._signal_group(signal.SIGKILL)
    second.process.wait(10)  # type: ignore[union-attr]
    shared = _queue(jobs, names["shared"], 4)
    orphaned = _queue(jobs, names["b"], 2)
    for job_id, _ in shared:
        assert jobs.wait(job_id, first, timeout=60).status is JobStatus.DONE
        assert _renderers(pair, job_id) == [first]
    if broker != module_redis_url:
        # What follows (the killed worker's presence expires, its model's queued jobs are
        # failed and refunded) is Redis and Postgres alone, whatever the broker: checked once.
        # The orphans are cancelled instead, so that the module's next test finds none queued.
        from db.repositories import cancel_job

        async def cancel_them() -> None:
            async with jobs.sessions() as session, session.begin():
                for job_id, _ in orphaned:
                    await cancel_job(session=session, job_id=job_id)

        jobs.run(cancel_them())
        return

    async def fail_them() -> list[uuid.UUID]:
        client = redis.asyncio.Redis.from_url(module_redis_url)
        try:
            directory = WorkerDirectory(client)
            deadline = time.monotonic() + 40
            while names["b"] in {m for p in await directory.live() for m in p.models}:
                assert time.monotonic() < deadline, "the killed worker's presence did not expire"
                await asyncio.sleep(0.5)
            return await fail_unserved_jobs(jobs.sessions, directory, grace_s=0)
        finally:
            await client.aclose()

    failed = jobs.run(fail_them())
    assert {job_id for job_id, _ in orphaned} <= set(failed)
    for job_id, user_id in orphaned:
        job = jobs.job(job_id)
        assert job.status is JobStatus.FAILED and "no worker served" in (job.error or "")
        assert jobs.balance(user_id) == 10  # the hold released: nothing charged


@pytest.fixture
def warm_pair(
    module_db_url: str, module_redis_url: str, data_dir: Path, three_models: Path, names: dict[str, str], broker: str
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Real renders: the first worker has model a warm, the second model b; both serve both."""
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=three_models,
        BROKER_URL=broker, OMP_NUM_THREADS="1",
    )
    yield from _two_workers(env, data_dir, [names["a"], names["b"]], [names["b"], names["a"]], ready_s=180)


def test_a_job_goes_to_the_worker_with_its_model_warm_unless_it_is_busy(
    on_broker: Jobs, warm_pair: tuple[WorkerProcess, WorkerProcess], names: dict[str, str], module_redis_url: str
) -> None:
    from gpu_worker.warm_routing import pool_reports

    jobs = on_broker
    first, second = warm_pair
    reports = redis.Redis.from_url(module_redis_url)

    def both_idle() -> None:
        # A process says it is idle just after its job's record (and log line): a job queued in
        # between meets a busy warm worker, which rightly sends it to the cold one.
        ours = {names["a"], names["b"]}  # the two workers' processes (not earlier tests' workers)
        deadline = time.monotonic() + 10
        while any(r.busy and ours & set(r.warm) for r in pool_reports(reports)) and time.monotonic() < deadline:
            time.sleep(0.05)

    # One at a time, both workers idle: each job goes to the worker with its model warm.
    # Two of a model in a row: both brokers hand consecutive messages to alternate consumers,
    # so without routing every second job would land on the cold worker.
    for model, warm in ((names["a"], first), (names["a"], first), (names["b"], second), (names["b"], second)) * 2:
        both_idle()
        ((job_id, _),) = _queue(jobs, model, 1)
        assert jobs.wait(job_id, warm, timeout=90).status is JobStatus.DONE
        assert _renderers((first, second), job_id) == [warm], f"job of {model} not rendered by the worker with it warm"
    assert "handed back" in first.log_tail(10**7) + second.log_tail(10**7)
    # A burst while the warm worker is busy: the other loads the model and renders too.
    burst = _queue(jobs, names["a"], 4)
    for job_id, _ in burst:
        assert jobs.wait(job_id, first, timeout=120).status is JobStatus.DONE
    assert any(_renderers((first, second), job_id) == [second] for job_id, _ in burst)
