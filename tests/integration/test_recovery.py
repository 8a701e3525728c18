"""Recovery within 30 s of a crash: the bot, the broker or the worker killed with ``kill -9``.

A real ``imaginarium worker`` (its reconciler on, as deployed) on a real broker: the
embedded Redis from the data folder, as the embedded default runs it, so that the broker
itself can be killed and started again. Every job must end done exactly once (one capture of
its credits, four images) within 30 s of the restart of whatever was killed.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from db.embedded import EmbeddedRedis
from db.models import JobStatus, LedgerKind
from gpu_worker.celery_app import make_celery
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import Jobs, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_broker]

RECOVERY_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The embedded Redis of a data folder of this module (the broker and the leases)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("broker") / "redis")
    server.acquire()
    try:
        yield server
    finally:
        if server.is_running():
            server.release()


@pytest.fixture(scope="module")
def recovery_jobs(jobs: Jobs, broker: EmbeddedRedis) -> Iterator[Jobs]:
    """The module's jobs, published to the embedded broker."""
    celery = make_celery(broker.broker_url)
    yield Jobs(jobs.engine, jobs.sessions, celery, jobs.model, jobs.loop)
    celery.close()


@pytest.fixture
def new_worker(
    module_db_url: str, broker: EmbeddedRedis, data_dir: Path, models_file: Path, model_name: str, tmp_path: Path
) -> Iterator[Callable[[], WorkerProcess]]:
    """Starts a worker on the embedded broker (reconciler on, as deployed); stops them all after the test."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        env = worker_env(
            db_url=module_db_url,
            redis_url=broker.redis_url,
            data_dir=data_dir,
            models_file=models_file,
            BROKER_URL=broker.broker_url,
        )
        proc = WorkerProcess(
            env=env, models=[model_name], lanes=["fast"], log_path=tmp_path / f"worker-{len(started)}.log"
        )
        started.append(proc)
        proc.start()
        proc.wait_ready(300)
        return proc

    yield start
    for proc in started:
        proc.close()


def _done_once_within(jobs: Jobs, job_ids: list[uuid.UUID], since: float, worker: WorkerProcess) -> float:
    """Wait until every job is done; check each was charged once; return the seconds it took from ``since``."""
    deadline = since + RECOVERY_S
    while True:
        states = {job_id: jobs.job(job_id) for job_id in job_ids}
        if all(job.status is JobStatus.DONE for job in states.values()):
            break
        failed = [j for j in states.values() if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)]
        assert not failed, f"{[(j.id, j.error) for j in failed]}\n{worker.log_tail()}"
        assert time.monotonic() < deadline, (
            f"not done {RECOVERY_S:.0f} s after the restart: "
            f"{[(j.id, j.status.value) for j in states.values()]}\n{worker.log_tail(8000)}"
        )
        time.sleep(0.2)
    took = time.monotonic() - since
    for job_id in job_ids:
        assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE], job_id
        assert len(jobs.images(job_id)) == 4
    return took


def test_jobs_the_killed_bot_never_published_are_sent_by_the_worker(
    recovery_jobs: Jobs, new_worker: Callable[[], WorkerProcess]
) -> None:
    worker = new_worker()
    # Committed with their outbox rows, never published: the bot died right after the commit.
    job_ids = [recovery_jobs.create(f"a blue square {i}", seed=40 + i)[0] for i in range(3)]
    died = time.monotonic()

    took = _done_once_within(recovery_jobs, job_ids, died, worker)

    assert took < RECOVERY_S
    print(f"bot killed before publishing: 3 jobs done {took:.1f} s later")


def test_a_broker_killed_with_jobs_queued_loses_none_of_them(
    recovery_jobs: Jobs, broker: EmbeddedRedis, new_worker: Callable[[], WorkerProcess]
) -> None:
    worker = new_worker()
    job_ids = [recovery_jobs.create(f"a green circle {i}", seed=50 + i)[0] for i in range(4)]
    for job_id in job_ids:
        recovery_jobs.publish(job_id)
    os.kill(int(broker.pidfile.read_text()), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while broker.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # down for a moment, as after a crash
    broker.release()
    broker.acquire()  # started again on the same data folder
    restarted = time.monotonic()

    took = _done_once_within(recovery_jobs, job_ids, restarted, worker)

    print(f"broker killed with 4 jobs queued: all done {took:.1f} s after its restart")


def test_a_worker_killed_mid_job_is_replaced_and_every_job_runs_once(
    recovery_jobs: Jobs, new_worker: Callable[[], WorkerProcess]
) -> None:
    first = new_worker()
    slow = recovery_jobs.create("a slow red circle fault:sleep=20@1", seed=60)[0]
    rest = [recovery_jobs.create(f"a red triangle {i}", seed=61 + i)[0] for i in range(2)]
    for job_id in (slow, *rest):
        recovery_jobs.publish(job_id)
    deadline = time.monotonic() + 60
    while recovery_jobs.job(slow).status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, first.log_tail()
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool, mid-job
    first.process.wait(timeout=30)  # type: ignore[union-attr]

    second = new_worker()
    restarted = time.monotonic()

    took = _done_once_within(recovery_jobs, [slow, *rest], restarted, second)

    assert recovery_jobs.job(slow).attempts == 2
    print(f"worker killed mid-job: all done {took:.1f} s after a new worker was ready")
