"""Both lanes on the run's broker (Redis, or RabbitMQ in ``.ci/run``'s second pass): jobs of
each lane end done once, and a fast-lane job queued behind relax-lane ones starts before them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.spec import Lane
from db.models import JobStatus, LedgerKind
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import Jobs, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def lanes_worker(
    jobs: Jobs, module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str
) -> Iterator[WorkerProcess]:
    """A worker that serves both lanes of the module's model."""
    env = worker_env(db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=models_file)
    with WorkerProcess(env=env, models=[model_name], extra_args=["--reconcile-every", "0"]) as proc:
        yield proc


def test_jobs_of_both_lanes_end_done_once(lanes_worker: WorkerProcess, jobs: Jobs) -> None:
    fast, user_id = jobs.create("a red circle", seed=3, cost=2, credits=10)
    relax, _ = jobs.create("a blue square", seed=4)
    jobs.publish(fast)
    jobs.publish(relax, Lane.RELAX)
    for job_id in (fast, relax):
        job = jobs.wait(job_id, lanes_worker)
        assert job.status is JobStatus.DONE, job.error
        assert job.attempts == 1 and len(jobs.images(job_id)) == 4
    assert jobs.ledger(fast) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert jobs.balance(user_id) == 10 - 2


def test_a_fast_job_starts_before_relax_jobs_queued_earlier(lanes_worker: WorkerProcess, jobs: Jobs) -> None:
    blocker, _ = jobs.create("a grey cube fault:sleep=2")
    jobs.publish(blocker)
    deadline = time.monotonic() + 60
    while jobs.job(blocker).status is JobStatus.QUEUED:
        assert time.monotonic() < deadline, lanes_worker.log_tail()
        time.sleep(0.1)
    relax: list[uuid.UUID] = []
    for n in range(3):
        job_id, _ = jobs.create(f"a relaxed square {n}", lane=Lane.RELAX)
        jobs.publish(job_id, Lane.RELAX)
        relax.append(job_id)
    fast, _ = jobs.create("an urgent circle")
    jobs.publish(fast)
    started = {}
    for job_id in [blocker, *relax, fast]:
        job = jobs.wait(job_id, lanes_worker)
        assert job.status is JobStatus.DONE, job.error
        started[job_id] = job.started_at
    assert started[fast] < min(started[j] for j in relax), "the fast job waited behind the relax lane"
