"""Every model family has one record (core/families.py) and one adapter (gpu_worker/families/)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from core.families import FAMILIES, ModelFamily, Task, family
from gpu_worker.families import ADAPTERS, PromptStyle, adapter, adapter_of
from gpu_worker.ops.common import as_task
from gpu_worker.progress import LATENT_RGB, latent_family
from gpu_worker.prompting import is_sdxl, is_weightable
from gpu_worker.tiny_model import TINY_FAMILIES, build_tiny_pipeline, write_tiny_model


@pytest.mark.parametrize("key", list(ModelFamily), ids=str)
def test_every_family_has_a_record_and_an_adapter_that_agree(key: ModelFamily) -> None:
    record, worker = family(key), adapter(key)
    assert record.key is key and key in worker.families
    assert set(worker.pipelines) == set(record.tasks)
    diffusers = importlib.import_module("diffusers")
    for task, name in worker.pipelines.items():
        assert hasattr(diffusers, name), f"{key}: diffusers has no {name}"
        assert worker.pipeline_class(task).__name__ == name
    if worker.preview is not None:
        assert LATENT_RGB[worker.preview.key] is worker.preview


def test_families_are_unique() -> None:
    assert len({f.key for f in FAMILIES}) == len(FAMILIES) == len(ModelFamily)
    served = [key for a in ADAPTERS for key in a.families]
    assert sorted(served) == sorted(ModelFamily)


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_the_tiny_pipeline_of_a_family_is_made_of_its_classes(name: str) -> None:
    pipe = build_tiny_pipeline(name)
    worker = adapter(name)
    assert adapter_of(pipe) is worker and worker.task_of(pipe) is Task.TEXT2IMG
    assert is_weightable(pipe) == (worker.prompt_style is not PromptStyle.PLAIN)
    assert is_sdxl(pipe) == (worker.prompt_style is PromptStyle.CLIP_PAIR)
    assert latent_family(pipe) == (worker.preview.key if worker.preview else None)
    for task in (Task.IMG2IMG, Task.INPAINT):
        if task not in worker.pipelines:
            with pytest.raises(ValueError, match=f"no {task.value} pipeline"):
                as_task(pipe, task.value)
            continue
        derived = as_task(pipe, task.value)
        assert type(derived).__name__ == worker.pipelines[task]
        assert getattr(derived, worker.denoiser) is getattr(pipe, worker.denoiser)  # shared, no copy
        assert adapter_of(derived) is worker


def test_a_task_a_family_lacks_is_an_error_not_a_guess() -> None:
    import dataclasses

    worker = dataclasses.replace(adapter("sd15"), pipelines={Task.TEXT2IMG: "StableDiffusionPipeline"})
    with pytest.raises(ValueError, match="no inpaint pipeline"):
        worker.pipeline_class(Task.INPAINT)


def test_a_model_loads_as_its_declared_family_or_not_at_all(tmp_path: Path) -> None:
    from core.models import ModelEntry, ModelSource, SourceKind
    from gpu_worker.registry import ModelLoadError, load_pipeline

    folder = write_tiny_model(tmp_path / "flux", "flux")

    def entry(key: ModelFamily) -> ModelEntry:
        return ModelEntry("mine", key, ModelSource(SourceKind.FOLDER, str(folder)), family(key).defaults)

    pipe = load_pipeline(entry(ModelFamily.FLUX), device="cpu")
    assert type(pipe).__name__ == "FluxPipeline"
    with pytest.raises(ModelLoadError, match="says family 'sdxl', but the weights load as FluxPipeline"):
        load_pipeline(entry(ModelFamily.SDXL), device="cpu")
