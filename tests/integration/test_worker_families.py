"""A real worker process renders with every model family whose tiny pipeline is written to a
diffusers folder and named in models.toml (SD 1.5 is the rest of the integration tests')."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.models import JobStatus
from gpu_worker.tiny_model import TINY_FAMILIES, write_tiny_model
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import JOB_SIZE, JOB_STEPS, Jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", params=[f for f in TINY_FAMILIES if f != "sd15"])
def family_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, family_name: str) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp(f"tiny-{family_name}"), family_name, seed=0)


@pytest.fixture(scope="module")
def models_file(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, model_name: str, family_name: str
) -> Path:
    path = tmp_path_factory.mktemp("config") / "models.toml"
    path.write_text(
        f'default = "{model_name}"\n\n'
        f"[models.{model_name}]\n"
        f'family = "{family_name}"\n'
        f'path = "{tiny_model_dir}"\n'
        f"pixel_budget = {JOB_SIZE * JOB_SIZE}\n"
        "size_step = 16\n"
        f"steps = {JOB_STEPS}\n"
        'sampler = "Euler"\n'
    )
    return path


def test_a_family_renders_an_imagine_job_in_a_real_worker(
    family_name: str, worker: WorkerProcess, jobs: Jobs
) -> None:
    job_id, _ = jobs.create(f"a red circle ({family_name})", seed=3, cost=1, credits=5)

    jobs.publish(job_id)
    job = jobs.wait(job_id, worker)

    assert job.status is JobStatus.DONE, job.error
    images = jobs.images(job_id)
    assert len(images) == 4 and len({img.sha256 for img in images}) == 4
    assert all((img.width, img.height) == (JOB_SIZE, JOB_SIZE) for img in images)
    assert job.grid_storage_key is not None
