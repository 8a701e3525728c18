"""Variations (subtle / strong) and remix: four new images from one image.

A variation is img2img from the chosen image with a new seed: the image is partly
re-noised (``strength``) and denoised again under the prompt. Subtle keeps the
composition and changes details; strong keeps the overall layout and colours and
redraws most of it. Remix is the same call with the prompt the user edited: the caller
passes a spec with the new prompt.
"""

from __future__ import annotations

from typing import Literal

from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.ops.common import IMAGES_PER_JOB, RenderSettings, StepCallback, render

VariationKind = Literal["subtle", "strong"]

VARIATION_STRENGTH: dict[str, float] = {"subtle": 0.35, "strong": 0.7}
"""Share of the denoising schedule that is re-run from the source image."""


def variation(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    kind: VariationKind = "strong",
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Four variations of ``source`` (img2img at the kind's strength, seeds ``spec.seed + i``).

    Args:
        pipe: the model's pipeline; the img2img pipeline is derived from it (shared weights).
        spec: the job, with the new seed the caller drew; for remix, the edited prompt.
        source: the image to vary; the variations have its size.
        kind: ``"subtle"`` (strength 0.35) or ``"strong"`` (0.7).
        defaults: the model's catalog defaults.
        num_images: variations to render.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        The images in seed order and the resolved render settings.

    Raises:
        ValueError: unknown kind.
    """
    if kind not in VARIATION_STRENGTH:
        raise ValueError(f"unknown variation kind {kind!r}; expected one of {', '.join(VARIATION_STRENGTH)}")
    return render(
        pipe,
        spec,
        defaults=defaults,
        num_images=num_images,
        image=source,
        strength=VARIATION_STRENGTH[kind],
        callback_on_step_end=callback_on_step_end,
    )


def remix(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    kind: VariationKind = "strong",
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Variations of ``source`` under an edited prompt: :func:`variation` with the remixed spec."""
    return variation(
        pipe,
        spec,
        source,
        kind=kind,
        defaults=defaults,
        num_images=num_images,
        callback_on_step_end=callback_on_step_end,
    )
