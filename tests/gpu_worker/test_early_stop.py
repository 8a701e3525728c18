"""``--stop``: the render ends part of the way through its steps, with the sampler's own
estimate of the finished image, on every kind of sampler that has one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from core.models import ModelDefaults
from gpu_worker.failures import JobRejected
from gpu_worker.ops.early_stop import stopping_scheduler
from gpu_worker.ops.imagine import imagine
from tests.gpu_worker.conftest import tiny_spec

DEFAULTS = ModelDefaults(pixel_budget=64 * 64, size_step=16, steps=6, cfg=5.0, sampler=None)


def _render(pipe: DiffusionPipeline, **spec: object) -> np.ndarray:
    images, _ = imagine(pipe, tiny_spec("a red fox", seed=3, **spec), defaults=DEFAULTS, num_images=1)
    return np.asarray(images[0], dtype=np.int16)


@pytest.mark.parametrize(
    "sampler", ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "Heun", "UniPC", "DDIM"]
)
def test_stop_ends_early_with_the_samplers_estimate(tiny_sd15: DiffusionPipeline, sampler: str) -> None:
    full = _render(tiny_sd15, sampler=sampler)
    early = _render(tiny_sd15, sampler=sampler, stop=40)
    assert not np.array_equal(full, early)
    assert np.array_equal(early, _render(tiny_sd15, sampler=sampler, stop=40))  # reproducible
    assert not np.array_equal(early, _render(tiny_sd15, sampler=sampler, stop=70))
    assert tiny_sd15.scheduler.__class__.__name__ != "Stopping"  # the cached pipeline is left as it was


def test_stop_on_a_flow_matching_family() -> None:
    from gpu_worker.tiny_model import build_tiny_pipeline

    flux = build_tiny_pipeline("flux")
    full = _render(flux, width=32, height=32)
    early = _render(flux, width=32, height=32, stop=50)
    assert early.shape == full.shape and not np.array_equal(full, early)


def test_a_sampler_without_an_estimate_is_refused(tiny_sd15: DiffusionPipeline) -> None:
    from diffusers import DPMSolverMultistepScheduler, PNDMScheduler

    with pytest.raises(JobRejected, match="--stop cannot apply"):
        stopping_scheduler(PNDMScheduler.from_config(tiny_sd15.scheduler.config), 50)
    eps = DPMSolverMultistepScheduler.from_config(
        tiny_sd15.scheduler.config, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"
    )
    with pytest.raises(JobRejected):
        stopping_scheduler(eps, 50)
    made = stopping_scheduler(DPMSolverMultistepScheduler.from_config(tiny_sd15.scheduler.config), 50)
    assert isinstance(made, DPMSolverMultistepScheduler) and dataclasses.is_dataclass(made) is False
