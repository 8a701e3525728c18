"""Sampler names -> fresh diffusers schedulers, each able to run a short render."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
)

from core.samplers import FLOW_SAMPLER_NAMES, SAMPLER_NAMES
from gpu_worker.schedulers import FLOW_SAMPLERS, SAMPLERS, UnknownSamplerError, make_scheduler


class _PipeWith:
    """Just enough of a pipeline for make_scheduler: a ``scheduler`` attribute."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler


def _sd15_scheduler_config() -> dict[str, Any]:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}


def test_every_sampler_users_may_type_has_a_recipe() -> None:
    assert set(SAMPLER_NAMES) == set(SAMPLERS)
    assert set(FLOW_SAMPLER_NAMES) == set(FLOW_SAMPLERS)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_each_sampler_builds_a_fresh_scheduler_and_renders(name: str, tiny_sd15: Any) -> None:
    before = dict(tiny_sd15.scheduler.config)
    scheduler: Any = make_scheduler(name, tiny_sd15)

    assert scheduler is not tiny_sd15.scheduler
    assert dict(tiny_sd15.scheduler.config) == before, "the cached pipeline's scheduler must not change"
    config = scheduler.config
    # The model's training schedule is kept whatever the solver.
    assert config["beta_schedule"] == "scaled_linear"
    assert config["beta_end"] == pytest.approx(0.012)
    if "Karras" in name:
        assert config["use_karras_sigmas"] is True
    elif "use_karras_sigmas" in config:
        assert config["use_karras_sigmas"] is False
    if "SDE" in name:
        assert config["algorithm_type"] == "sde-dpmsolver++"
    if "3M" in name:
        assert config["solver_order"] == 3

    pipe = type(tiny_sd15)(**{**tiny_sd15.components, "scheduler": scheduler})
    pipe.set_progress_bar_config(disable=True)
    # Guidance off and latents out keep 27 renders cheap: what differs between samplers is
    # the denoising loop, which this runs in full.
    latents = pipe(
        "a red cat",
        num_inference_steps=2,
        height=32,
        width=32,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
    ).images
    assert latents.shape == (1, 4, 16, 16)
    assert torch.isfinite(latents).all()
    assert latents.std() > 0.1, "the render produced flat latents"


def test_none_gives_a_fresh_copy_of_the_model_default() -> None:
    default = DPMSolverMultistepScheduler(**_sd15_scheduler_config(), use_karras_sigmas=True)
    pipe = _PipeWith(default)

    first, second = make_scheduler(None, pipe), make_scheduler(None, pipe)

    assert type(first) is DPMSolverMultistepScheduler
    assert first is not default and first is not second
    assert first.config["use_karras_sigmas"] is True
    # Per-job state stays per job: stepping one copy leaves the other untouched.
    first.set_timesteps(5)
    assert second.timesteps is None or len(second.timesteps) != 5


def test_options_of_the_default_scheduler_do_not_leak_into_the_chosen_one() -> None:
    pipe = _PipeWith(
        DPMSolverMultistepScheduler(
            **_sd15_scheduler_config(),
            use_karras_sigmas=True,
            algorithm_type="sde-dpmsolver++",
            solver_order=3,
        )
    )

    euler = make_scheduler("Euler", pipe)
    plain = make_scheduler("DPM++ 2M", pipe)

    assert type(euler) is EulerDiscreteScheduler
    assert euler.config["use_karras_sigmas"] is False
    assert plain.config["algorithm_type"] == "dpmsolver++"
    assert plain.config["solver_order"] == 2
    assert plain.config["use_karras_sigmas"] is False


def test_other_spellings_are_accepted() -> None:
    pipe = _PipeWith(EulerDiscreteScheduler(**_sd15_scheduler_config()))

    assert type(make_scheduler("euler_ancestral", pipe)) is EulerAncestralDiscreteScheduler
    assert make_scheduler("dpmpp_2m_karras", pipe).config["use_karras_sigmas"] is True


def test_unknown_sampler_is_a_clear_error() -> None:
    pipe = _PipeWith(EulerDiscreteScheduler(**_sd15_scheduler_config()))

    with pytest.raises(UnknownSamplerError, match=r"unknown sampler 'Eular b'.*Euler a"):
        make_scheduler("Eular b", pipe)


def test_flow_matching_models_get_flow_samplers_only() -> None:
    pipe = _PipeWith(FlowMatchEulerDiscreteScheduler(shift=3.0))

    ancestral = make_scheduler("Euler a", pipe)

    assert type(ancestral) is FlowMatchEulerDiscreteScheduler
    assert ancestral.config["stochastic_sampling"] is True
    assert ancestral.config["shift"] == 3.0
    with pytest.raises(UnknownSamplerError, match="flow-matching"):
        make_scheduler("DPM++ 2M Karras", pipe)
