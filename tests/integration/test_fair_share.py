"""Fair share across users, with a real worker on a simulated GPU: a burst of jobs from one
member takes turns with another member's job instead of holding the GPU until it is done."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_worker.simulated import SECONDS_ENV
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import Jobs, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def simulated_worker(
    module_db_url: str, module_redis_url: str, data_dir: Path, models_file: Path, model_name: str
) -> Iterator[WorkerProcess]:
    env = worker_env(
        db_url=module_db_url, redis_url=module_redis_url, data_dir=data_dir, models_file=models_file,
        **{SECONDS_ENV: "0.4"},
    )
    with WorkerProcess(env=env, models=[model_name], lanes=("fast",), log_path=data_dir / "fair.log") as worker:
        yield worker


def test_a_burst_takes_turns_with_another_members_job(jobs: Jobs, simulated_worker: WorkerProcess) -> None:
    burst_user = None
    burst = []
    for n in range(6):
        job_id, user_id = jobs.create(f"burst {n}", credits=100)
        if burst_user is None:
            burst_user = user_id
        else:  # the same member: move the job to the first one's account
            jobs.execute("UPDATE jobs SET user_id = :u WHERE id = :j", u=burst_user, j=job_id)
        burst.append(job_id)
    other, _ = jobs.create("someone else's")
    for job_id in [*burst, other]:
        jobs.publish(job_id)
    done = [jobs.wait(job_id, simulated_worker, timeout=60) for job_id in [*burst, other]]
    order = sorted(done, key=lambda job: job.finished_at)
    # FIFO would finish the other member's job last; fair share finishes it right after the
    # burst's first job (the one the worker held when it was queued) or the second.
    assert [job.id for job in order].index(other) <= 2, [j.prompt for j in order]
    assert all(job.status.value == "done" for job in done)
    assert len(jobs.images(other)) == 4
