"""A real worker process renders with every model family whose tiny pipeline is written to a
diffusers folder and named in models.toml (SD 1.5 is the rest of the integration tests'):
text to image, image to image (a variation), inpainting (a zoom out) and instruction edits
(Edit… under an image) where the family has them, and a job with the family's LoRA."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from core.families import Task, family
from core.kinds import recipe
from core.settings import load_settings
from core.spec import JobKind, LoraRef
from db.models import JobStatus
from gpu_worker.store import open_store
from gpu_worker.tiny_model import TINY_FAMILIES, write_tiny_model
from gpu_worker.worker_process import WorkerProcess
from tests.gpu_worker.conftest import write_tiny_lora
from tests.integration.conftest import JOB_SIZE, JOB_STEPS, Jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.one_broker]


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
        f"[[models.{model_name}.loras]]\n"
        'name = "film"\n'
        f'path = "{write_tiny_lora(tiny_model_dir.parent / "film.safetensors", family_name)}"\n'
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


def test_a_family_renders_every_operation_it_has_and_a_lora_in_a_real_worker(
    family_name: str, worker: WorkerProcess, jobs: Jobs, data_dir: Path
) -> None:
    store = open_store(load_settings(data_dir=data_dir, image_store="local"))

    def pixels(job_id: object) -> list[bytes]:
        return [Image.open(io.BytesIO(store.get(img.storage_key))).tobytes() for img in jobs.images(job_id)]

    first, _ = jobs.create("a red circle", seed=5, cost=1, credits=5)
    jobs.publish(first)
    assert jobs.wait(first, worker).status is JobStatus.DONE

    ran = {Task.TEXT2IMG}
    for kind, variant in ((JobKind.VARIATION, "strong"), (JobKind.ZOOM, "2"), (JobKind.EDIT, "image")):
        task = recipe(kind, variant).task
        if not family(family_name).supports(task):
            continue
        job_id, _ = jobs.create("a red circle", seed=5, cost=1, credits=5, kind=kind, variant=variant, parent=(first, 0))
        jobs.publish(job_id)
        job = jobs.wait(job_id, worker)
        assert job.status is JobStatus.DONE, job.error
        images = jobs.images(job_id)
        assert len(images) == 4 and all((img.width, img.height) == (JOB_SIZE, JOB_SIZE) for img in images)
        ran.add(task)
    assert ran == set(Task) & set(family(family_name).tasks)

    styled, _ = jobs.create("a red circle", seed=5, cost=1, credits=5, loras=(LoraRef("film", 1.0),))
    jobs.publish(styled)
    job = jobs.wait(styled, worker)
    assert job.status is JobStatus.DONE, job.error
    assert all(a != b for a, b in zip(pixels(styled), pixels(first), strict=True))
