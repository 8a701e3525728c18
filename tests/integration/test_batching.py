"""Cross-job batching in a real worker: jobs queued while the worker is busy render in one
pipeline call when their model batches, each recorded with its own images and credits."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.settings import load_settings
from core.tasks import MAX_ATTEMPTS
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.store import open_store
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import Jobs, write_models_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def models_file(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, model_name: str) -> Path:
    """The module's tiny model, rendering up to 4 queued jobs in one call."""
    return write_models_file(tmp_path_factory.mktemp("config"), tiny_model_dir, model_name,
                             "batch_jobs = 4\nbatch_window_ms = 0\n")


def test_jobs_queued_behind_a_busy_worker_render_in_one_call(jobs: Jobs, worker: WorkerProcess, data_dir: Path) -> None:
    blocker, _ = jobs.create("a slow start fault:slow=0.6")
    jobs.execute("UPDATE jobs SET batch_key = NULL WHERE id = :j", j=blocker)  # it renders alone
    jobs.publish(blocker)
    deadline = time.monotonic() + 60
    while jobs.job(blocker).status.value == "queued":
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.05)
    queued = [jobs.create(prompt, seed=seed) for prompt, seed in (("a red circle", 1), ("a blue square", 2),
                                                                    ("a green triangle", 3))]
    for job_id, _ in queued:
        jobs.publish(job_id)
    done = [jobs.wait(job_id, worker) for job_id, _ in queued]
    assert jobs.wait(blocker, worker).status.value == "done"
    assert [job.status.value for job in done] == ["done"] * 3
    log = worker.log_tail(200_000)
    for job in done:
        assert f"job {job.id}: imagine attempt 1/{MAX_ATTEMPTS}, in one call with 2 other job(s)" in log
    store = open_store(load_settings(data_dir=data_dir, image_store="local"))
    firsts = []
    for (job_id, user_id), job, seed in zip(queued, done, (1, 2, 3), strict=True):
        images = jobs.images(job_id)
        assert [img.seed for img in images] == [seed + i for i in range(4)]
        assert jobs.balance(user_id) == 8  # 10 granted, 2 captured
        assert job.grid_storage_key is not None
        data = store.get(images[0].storage_key)
        assert parse_parameters(read_parameters(data) or "").prompt == job.prompt
        firsts.append(np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16))
    assert all(np.abs(firsts[0] - other).mean() > 1 for other in firsts[1:])
