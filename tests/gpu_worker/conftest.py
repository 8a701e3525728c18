"""Shared fixtures of the GPU worker's tests: tiny pipelines of the real diffusers classes.

The pipelines are session-scoped (building one takes a fraction of a second, but the tests
share them so that memory stays small); a test that changes a pipeline (scheduler, LoRA)
must leave it as it found it, which is what the worker's own code guarantees between jobs.

Other test files import the helpers directly::

    from tests.gpu_worker.conftest import TINY_SIZE, TINY_STEPS, tiny_spec
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from core.spec import JobSpec, PromptPart
from gpu_worker.tiny_model import TinyFamily, build_tiny_pipeline, write_tiny_model

TINY_SIZE = 32
"""Image side used in tests: the smallest size the tiny UNet accepts cheaply (16x16 latents)."""

TINY_STEPS = 2
"""Denoising steps used in tests."""


def tiny_spec(prompt: str = "a red fox in the snow", **overrides: Any) -> JobSpec:
    """A JobSpec sized for the tiny pipelines (32x32, 2 steps, seed 42) with ``overrides``."""
    values: dict[str, Any] = {
        "parts": (PromptPart(prompt),),
        "width": TINY_SIZE,
        "height": TINY_SIZE,
        "seed": 42,
        "steps": TINY_STEPS,
        "cfg": 7.0,
    }
    values.update(overrides)
    return JobSpec(**values)


def write_tiny_lora(out_file: Path, family: TinyFamily = "sd15", *, seed: int = 5, rank: int = 4) -> Path:
    """Write a LoRA for the tiny denoiser (UNet or transformer) of ``family`` as one
    ``.safetensors`` file.

    The LoRA is made with peft on a freshly built tiny pipeline; its B matrices are random
    rather than zero (``init_lora_weights=False``) so that applying it changes the output.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from gpu_worker.families import adapter

    pipe = build_tiny_pipeline(family, seed=seed)
    denoiser_name = adapter(family).denoiser
    denoiser = getattr(pipe, denoiser_name)
    torch.manual_seed(seed)
    denoiser.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(  # type: ignore[attr-defined]
        out_file.parent,
        **{f"{denoiser_name}_lora_layers": get_peft_model_state_dict(denoiser)},
        weight_name=out_file.name,
        safe_serialization=True,
    )
    return out_file


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> Iterator[None]:
    # The test machines have few cores shared by several runs; more threads only add
    # contention for these tiny tensors.
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sd15() -> DiffusionPipeline:
    """A tiny ``StableDiffusionPipeline`` (SD 1.5 shapes, random weights, seed 0)."""
    return build_tiny_pipeline("sd15", seed=0)


@pytest.fixture(scope="session")
def tiny_sdxl() -> DiffusionPipeline:
    """A tiny ``StableDiffusionXLPipeline`` (SDXL shapes, random weights, seed 0)."""
    return build_tiny_pipeline("sdxl", seed=0)


@pytest.fixture(scope="session", params=["sd15", "sdxl"])
def tiny_pipe(request: pytest.FixtureRequest) -> DiffusionPipeline:
    """Each tiny pipeline in turn: tests that take it run for both model families."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD 1.5 pipeline saved as a diffusers folder (safetensors weights)."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny-sd15"), "sd15", seed=0)


@pytest.fixture(scope="session")
def tiny_sd15_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA file (``.safetensors``) for the tiny SD 1.5 UNet."""
    return write_tiny_lora(tmp_path_factory.mktemp("lora") / "tiny-style.safetensors", "sd15")
