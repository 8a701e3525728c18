"""Several /imagine jobs in one pipeline call (gpu_worker.ops.batch, JobRenderer.render_batch):
each job gets the images it would have got alone, its own progress and its own Stop."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelEntry
from core.models_file import load_catalog
from core.spec import JobKind, JobSpec, Lane
from gpu_worker.cache import PipelineCache
from gpu_worker.images import read_parameters
from gpu_worker.ops.batch import imagine_batch, per_job_callbacks, stack_prompt_arguments
from gpu_worker.ops.imagine import imagine
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.rendering import JobRenderer
from gpu_worker.stopping import JobStopped
from tests.gpu_worker.conftest import tiny_spec
from tests.gpu_worker.test_tasks_rendering import DictStore

SPECS = [
    tiny_spec("a red fox in the snow", seed=42),
    tiny_spec("a blue whale", seed=7, negative_prompt="blurry, dark"),
    tiny_spec("a green (forest:1.3)", seed=1234, chaos=60),
    tiny_spec("a castle:: at night::0.5", seed=5, weird=300),
]


def _pixels(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_each_job_of_a_call_gets_the_images_it_would_get_alone(tiny_pipe: DiffusionPipeline) -> None:
    together = imagine_batch(tiny_pipe, SPECS)
    assert len(together) == len(SPECS)
    for spec, result in zip(SPECS, together, strict=True):
        assert not isinstance(result, JobStopped)
        images, settings = result
        alone, alone_settings = imagine(tiny_pipe, spec)
        assert settings.seeds == alone_settings.seeds == tuple(spec.seed + i for i in range(4))  # type: ignore[operator]
        # The same rows of noise and conditioning; only the float sums of a larger batch differ.
        assert np.abs(_pixels(images) - _pixels(alone)).max() <= 3
    firsts = [_pixels(r[0])[0] for r in together if not isinstance(r, JobStopped)]
    assert all(np.abs(firsts[0] - other).mean() > 5 for other in firsts[1:])


def test_a_prompt_that_needs_more_windows_renders_in_a_call_of_its_own(tiny_sd15: DiffusionPipeline) -> None:
    long = tiny_spec(" ".join(["a very detailed painting of a fox"] * 20), seed=3)
    specs = [SPECS[0], long, SPECS[1]]
    calls: list[int] = []
    original = type(tiny_sd15).__call__

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["generator"]))
        return original(self, *args, **kwargs)

    type(tiny_sd15).__call__ = counting  # type: ignore[method-assign]
    try:
        together = imagine_batch(tiny_sd15, specs)
    finally:
        type(tiny_sd15).__call__ = original  # type: ignore[method-assign]
    assert sorted(calls) == [4, 8]
    alone, _ = imagine(tiny_sd15, long)
    assert np.abs(_pixels(together[1][0]) - _pixels(alone)).max() <= 3  # type: ignore[index]


def test_prompt_arguments_stack_only_when_every_value_fits() -> None:
    a = {"prompt_embeds": torch.zeros(4, 77, 8), "guidance_rescale": 0.0}
    b = {"prompt_embeds": torch.ones(4, 77, 8), "guidance_rescale": 0.0}
    stacked = stack_prompt_arguments([a, b])
    assert stacked is not None and stacked["prompt_embeds"].shape == (8, 77, 8)
    assert stacked["prompt_embeds"][4:].eq(1).all()
    assert stack_prompt_arguments([a, {"prompt_embeds": torch.ones(4, 154, 8), "guidance_rescale": 0.0}]) is None
    assert stack_prompt_arguments([a, {**b, "guidance_rescale": 0.7}]) is None
    assert stack_prompt_arguments([a, {"prompt_embeds": b["prompt_embeds"]}]) is None
    texts = stack_prompt_arguments([{"prompt": ["x"] * 4}, {"prompt": ["y"] * 4}])
    assert texts == {"prompt": ["x"] * 4 + ["y"] * 4}


def test_each_job_sees_its_own_rows_and_a_stop_drops_only_that_job(tiny_sd15: DiffusionPipeline) -> None:
    seen: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def watcher(index: int, stop_at: int | None = None) -> Any:
        def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            assert tensors["latents"].shape[0] == 4
            seen[index].append(float(tensors["latents"].mean()))
            if stop_at is not None and step >= stop_at:
                raise JobStopped((step + 1) / 4)
            return tensors

        on_step.tensor_inputs = ["latents"]  # type: ignore[attr-defined]
        return on_step

    specs = [replace(s, steps=4) for s in SPECS[:3]]
    together = imagine_batch(tiny_sd15, specs, callbacks=[watcher(0), watcher(1, stop_at=1), watcher(2)])
    assert isinstance(together[1], JobStopped) and together[1].rendered == pytest.approx(0.5)
    assert not isinstance(together[0], JobStopped) and not isinstance(together[2], JobStopped)
    assert len(seen[0]) == len(seen[2]) == 4 and len(seen[1]) == 2
    assert seen[0] != seen[2]  # each callback got its own job's latents


def test_when_every_job_is_stopped_the_call_ends() -> None:
    def stop(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        raise JobStopped(0.25)

    callback, stopped = per_job_callbacks([stop, stop], rows=4)
    with pytest.raises(JobStopped):
        callback(None, 0, None, {"latents": torch.zeros(8, 4, 4, 4)})
    assert stopped == {0: 0.25, 1: 0.25}


# --------------------------------------------------------------------------- the renderer


def _job(spec: JobSpec) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(), kind=JobKind.IMAGINE, variant=None, spec=replace(spec, seed=None), model="tiny",
        lane=Lane.FAST, seed=int(spec.seed or 0), attempts=1, private=False, parent_id=None, parent_index=None,
        source_keys=(),
    )


@pytest.fixture
def renderer(tmp_path: Path, tiny_sd15: DiffusionPipeline) -> tuple[JobRenderer, list[int]]:
    catalog = load_catalog(None, data_dir=tmp_path)
    calls: list[int] = []

    def loader(entry: ModelEntry) -> DiffusionPipeline:
        return tiny_sd15

    def classify(images: Any) -> list[float]:
        calls.append(len(images))
        return [0.9 if i == 5 else 0.1 for i in range(len(images))]

    made = JobRenderer(catalog=catalog, pipelines=PipelineCache(catalog, loader=loader), store=DictStore(),
                       classify=classify)
    return made, calls


def test_the_renderer_stores_each_jobs_own_images_and_grid(renderer: tuple[JobRenderer, list[int]]) -> None:
    made, detector_calls = renderer
    jobs = [_job(s) for s in SPECS[:3]]
    results = made.render_batch(jobs)
    assert detector_calls == [12]  # one detector call for every image of the call
    for job, result in zip(jobs, results, strict=True):
        assert isinstance(result, RenderResult)
        assert [img.seed for img in result.images] == [job.seed + i for i in range(4)]
        assert result.grid_storage_key is not None
        text = read_parameters(Image.open(io.BytesIO(made.store.get(result.images[0].storage_key))))
        assert text is not None and job.spec.prompt.split(" ")[1] in text and f"Seed: {job.seed}" in text
    assert [img.nsfw for img in results[1].images] == [False, True, False, False]  # type: ignore[union-attr]
    # The same job rendered alone draws the same pictures (up to the float sums of a batch).
    alone = made(jobs[2])

    def pixels(result: RenderResult) -> np.ndarray:
        return _pixels([Image.open(io.BytesIO(made.store.get(img.storage_key))).convert("RGB") for img in result.images])

    assert np.abs(pixels(alone) - pixels(results[2])).max() <= 3  # type: ignore[arg-type]
