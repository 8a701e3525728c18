"""The worker on RabbitMQ, the broker most Celery deployments run at scale: the same
guarantees as on Redis (a job ends once, failures retry to the cap and refund, a pool process
killed mid-job gets its message redelivered, both lanes served), with the leases and
progress on Redis as always.

RabbitMQ runs on 127.0.0.1:5672 (guest/guest) on these machines; the queues are named after
the module's own model, so runs never share one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from core.spec import Lane
from core.tasks import MAX_ATTEMPTS, render_queue
from db.models import JobStatus, LedgerKind
from db.session import create_engine, create_session_factory
from gpu_worker.celery_app import make_celery
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import Jobs, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def rabbit_jobs(module_db_url: str, model_name: str) -> Iterator[Jobs]:
    if not _rabbitmq_up():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    loop = asyncio.new_event_loop()
    engine = create_engine(module_db_url)
    celery = make_celery(RABBITMQ_URL)
    yield Jobs(engine, create_session_factory(engine), celery, model_name, loop)
    celery.close()
    loop.run_until_complete(engine.dispose())
    loop.close()
    # The module's queues are its own: remove them from the broker.
    with Connection(RABBITMQ_URL) as conn:
        channel = conn.channel()
        for lane in ("fast", "relax"):
            try:
                channel.queue_delete(render_queue(lane, model_name))
            except Exception:
                channel = conn.channel()


@pytest.fixture(scope="module")
def rabbit_worker(
    rabbit_jobs: Jobs, module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str
) -> Iterator[WorkerProcess]:
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=models_file,
        BROKER_URL=RABBITMQ_URL,
    )
    with WorkerProcess(env=env, models=[model_name], extra_args=["--reconcile-every", "0"]) as proc:
        yield proc


def test_jobs_of_both_lanes_end_done_once_on_rabbitmq(rabbit_worker: WorkerProcess, rabbit_jobs: Jobs) -> None:
    jobs = rabbit_jobs
    fast, user_id = jobs.create("a red circle", seed=3, cost=2, credits=10)
    relax, _ = jobs.create("a blue square", seed=4)
    jobs.publish(fast)
    jobs.publish(relax, Lane.RELAX)
    for job_id in (fast, relax):
        job = jobs.wait(job_id, rabbit_worker)
        assert job.status is JobStatus.DONE, job.error
        assert job.attempts == 1 and len(jobs.images(job_id)) == 4
    assert jobs.ledger(fast) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert jobs.balance(user_id) == 10 - 2


def test_a_failing_job_retries_through_rabbitmq_to_the_cap_and_is_refunded(
    rabbit_worker: WorkerProcess, rabbit_jobs: Jobs
) -> None:
    jobs = rabbit_jobs
    failing, user_id = jobs.create("a green triangle fault:raise", cost=3, credits=5)
    jobs.publish(failing)
    job = jobs.wait(failing, rabbit_worker)
    assert job.status is JobStatus.FAILED and job.attempts == MAX_ATTEMPTS
    assert jobs.ledger(failing) == [LedgerKind.HOLD, LedgerKind.RELEASE]
    assert jobs.balance(user_id) == 5


def test_a_pool_process_killed_mid_job_gets_its_message_again_from_rabbitmq(
    rabbit_worker: WorkerProcess, rabbit_jobs: Jobs
) -> None:
    jobs = rabbit_jobs
    job_id, user_id = jobs.create("a lighthouse fault:exit@1", seed=21, cost=2, credits=10)
    jobs.publish(job_id)
    job = jobs.wait(job_id, rabbit_worker)
    assert job.status is JobStatus.DONE, job.error
    assert job.attempts == 2 and len(jobs.images(job_id)) == 4
    assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert jobs.balance(user_id) == 10 - 2
