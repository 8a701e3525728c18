"""A real Celery worker process on the real Redis and Postgres renders, retries, refunds, recovers.

One worker (prefork, one child, finishing each job behind the next render) serves the
module's tiny model; each test queues committed
jobs and publishes ``render(job_id)`` the way the bot does. Failures are injected with
``fault:`` markers in the prompt, which only a worker started with
``IMAGINARIUM_TEST_FAULTS=1`` honours.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from core.settings import load_settings
from core.spec import Lane
from core.tasks import MAX_ATTEMPTS
from db.models import JobStatus, LedgerKind
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.store import open_store
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import JOB_SIZE, Jobs, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def worker_settings() -> dict[str, str]:
    """This module's worker finishes each job behind the next render (``FINISH_BEHIND=on``, a
    GPU worker's default): its jobs must end exactly as one at a time (the other modules'
    workers, on this CPU, run one job at a time)."""
    return {"FINISH_BEHIND": "on"}


def test_an_imagine_job_ends_done_with_four_images_a_grid_files_and_credits_captured(
    worker: WorkerProcess, jobs: Jobs, data_dir: Path
) -> None:
    job_id, user_id = jobs.create("a red circle", seed=11, cost=2, credits=10)

    jobs.publish(job_id)
    job = jobs.wait(job_id, worker)

    assert job.status is JobStatus.DONE, job.error
    assert job.attempts == 1
    images = jobs.images(job_id)
    assert [(img.index, img.seed) for img in images] == [(0, 11), (1, 12), (2, 13), (3, 14)]
    assert all((img.width, img.height) == (JOB_SIZE, JOB_SIZE) for img in images)
    assert all(img.nsfw_score is not None for img in images)
    store = open_store(load_settings(data_dir=data_dir, image_store="local"))
    for img in images:
        data = store.get(img.storage_key)
        assert hashlib.sha256(data).hexdigest() == img.sha256
        params = parse_parameters(read_parameters(data) or "")
        assert params.prompt == "a red circle"
        assert params.settings["Seed"] == str(img.seed)
    assert job.grid_storage_key is not None
    grid = Image.open(io.BytesIO(store.get(job.grid_storage_key)))
    assert grid.size == (2 * JOB_SIZE, 2 * JOB_SIZE)
    # Four different images, not one image four times.
    assert len({img.sha256 for img in images}) == 4
    assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert jobs.balance(user_id) == 10 - 2
    # Its task handed the finish to the finisher (FINISH_BEHIND=on) rather than recording it.
    assert "succeeded" in worker.log_tail(200_000) and "'rendered'" in worker.log_tail(200_000)


def test_a_job_whose_operation_raises_fails_refunded_after_the_cap_and_the_worker_serves_on(
    worker: WorkerProcess, jobs: Jobs
) -> None:
    failing, user_id = jobs.create("a blue square fault:raise", cost=3, credits=5)

    jobs.publish(failing)
    job = jobs.wait(failing, worker)

    assert job.status is JobStatus.FAILED
    assert job.attempts == MAX_ATTEMPTS
    # The user reads a reason, not the exception; the operator finds it in the worker's log.
    assert job.error is not None and job.error.startswith("the worker hit an internal error")
    assert "TestFault: injected test fault" in worker.log_tail()
    assert jobs.images(failing) == []
    assert jobs.ledger(failing) == [LedgerKind.HOLD, LedgerKind.RELEASE]
    assert jobs.balance(user_id) == 5
    # The same worker takes the next job.
    following, _ = jobs.create("a green triangle", seed=3)
    jobs.publish(following)
    assert jobs.wait(following, worker).status is JobStatus.DONE


def test_out_of_memory_fails_at_once_with_a_refund_and_the_worker_serves_on(
    worker: WorkerProcess, jobs: Jobs
) -> None:
    failing, user_id = jobs.create("a huge mural fault:oom", cost=4, credits=4)

    jobs.publish(failing)
    job = jobs.wait(failing, worker)

    assert job.status is JobStatus.FAILED
    assert job.attempts == 1
    assert job.error is not None and "out of GPU memory" in job.error
    assert jobs.balance(user_id) == 4
    following, _ = jobs.create("a small sketch", seed=5)
    jobs.publish(following)
    assert jobs.wait(following, worker).status is JobStatus.DONE


def test_a_worker_process_killed_mid_job_runs_the_job_again_and_charges_once(
    worker: WorkerProcess, jobs: Jobs
) -> None:
    # The pool process dies on the first attempt (as on a segfault or the OOM killer).
    job_id, user_id = jobs.create("a lighthouse fault:exit@1", seed=21, cost=2, credits=10)
    children_before = set(worker.pool_pids())

    jobs.publish(job_id)
    job = jobs.wait(job_id, worker)

    assert job.status is JobStatus.DONE, job.error
    assert job.attempts == 2
    assert len(jobs.images(job_id)) == 4
    assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert jobs.balance(user_id) == 10 - 2
    # A new pool process replaced the one that died.
    assert set(worker.pool_pids()) != children_before


def test_the_soft_time_limit_fails_the_job_with_a_refund(
    module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str, jobs: Jobs
) -> None:
    # A worker of its own with a 2 s soft limit, on a relax-only queue so that the module's
    # worker (which consumes the fast queue) does not take the job.
    env = worker_env(
        db_url=module_db_url,
        redis_url=module_redis_url,
        data_dir=data_dir,
        models_file=models_file,
        IMAGINARIUM_SOFT_TIME_LIMIT="2",
        IMAGINARIUM_HARD_TIME_LIMIT="30",
    )
    with WorkerProcess(
        env=env, models=[model_name], lanes=["relax"], extra_args=["--reconcile-every", "0"]
    ) as slow:
        job_id, user_id = jobs.create("a slow painting fault:sleep=20", cost=2, credits=2, lane=Lane.RELAX)
        jobs.publish(job_id, Lane.RELAX)
        job = jobs.wait(job_id, slow, timeout=60)

    assert job.status is JobStatus.FAILED
    assert job.attempts == 1
    assert job.error is not None and "took too long" in job.error
    assert jobs.balance(user_id) == 2


def test_the_workers_reconciler_recovers_a_lost_message_and_a_dead_workers_job(
    module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str, jobs: Jobs
) -> None:
    # Two relax-lane jobs nobody will publish: one queued for 20 minutes (its message was
    # lost), one claimed 5 minutes ago by a worker that died without a trace (no lease).
    lost, lost_user = jobs.create("a lost letter", seed=31, cost=2, credits=2, lane=Lane.RELAX)
    orphan, orphan_user = jobs.create("an orphan", seed=41, cost=2, credits=2, lane=Lane.RELAX)
    jobs.execute(
        "UPDATE jobs SET queued_at = now() - interval '20 minutes', created_at = now() - interval '20 minutes' "
        "WHERE id = :id",
        id=lost,
    )
    jobs.execute(
        "UPDATE jobs SET status = 'running', attempts = 1, started_at = now() - interval '5 minutes' WHERE id = :id",
        id=orphan,
    )
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=models_file
    )

    with WorkerProcess(
        env=env, models=[model_name], lanes=["relax"], extra_args=["--reconcile-every", "1"]
    ) as proc:
        recovered = jobs.wait(lost, proc)
        taken_over = jobs.wait(orphan, proc)

    assert recovered.status is JobStatus.DONE and recovered.attempts == 1
    assert taken_over.status is JobStatus.DONE and taken_over.attempts == 2
    for job_id, user_id in ((lost, lost_user), (orphan, orphan_user)):
        assert len(jobs.images(job_id)) == 4
        assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
        assert jobs.balance(user_id) == 0


def test_the_worker_announces_its_models_and_lanes(worker: WorkerProcess, module_redis_url: str, model_name: str) -> None:
    import redis

    from core.workers import PRESENCE_PREFIX, WorkerPresence, last_served_key

    client = redis.Redis.from_url(module_redis_url)
    keys = list(client.scan_iter(match=f"{PRESENCE_PREFIX}*"))
    assert len(keys) == 1
    presence = WorkerPresence.from_json(client.get(keys[0]) or b"")
    assert presence is not None and presence.models == (model_name,) and presence.lanes == ("fast",)
    assert 0 < client.ttl(keys[0]) <= 20
    assert client.get(last_served_key(model_name)) is not None


def test_the_worker_exports_prometheus_metrics_of_its_pool(
    worker: WorkerProcess, jobs: Jobs, metrics_port: int, model_name: str
) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    job_id, _ = jobs.create("a yellow star", seed=5)
    jobs.publish(job_id)
    assert jobs.wait(job_id, worker).status is JobStatus.DONE
    failing, _ = jobs.create("a wide mural fault:oom", seed=6)
    jobs.publish(failing)
    assert jobs.wait(failing, worker).status is JobStatus.FAILED

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    done = samples[("imaginarium_worker_jobs_total", (("kind", "imagine"), ("model", model_name), ("outcome", "done")))]
    assert done >= 1
    assert samples[("imaginarium_worker_job_seconds_count", (("kind", "imagine"), ("model", model_name)))] >= done
    assert samples[("imaginarium_worker_wait_seconds_count", (("lane", "fast"), ("model", model_name)))] >= done
    assert samples[("imaginarium_worker_failures_total", (("reason", "out_of_memory"),))] >= 1
