"""``/blend`` (2-5 images into four new ones) and image prompts with ``--iw``.

Both are img2img from a mixed init image on the job's own model:

- **Blend.** Each source is cropped to the output's aspect ratio (centre crop, like
  ``object-fit: cover``) and resized to the output size; the init image is their pixel-wise
  mean. The four images are denoised from it at strength :data:`BLEND_STRENGTH` (0.8): the
  sources' colours and layout carry through while the model redraws a single coherent
  picture instead of a double exposure. The prompt is optional: without one the model
  follows the sources alone.
- **Image prompts** (``--iw``, the URLs of ``spec.image_urls``, fetched by the caller): the
  images are mixed the same way and used as the init at a strength that falls as the
  image weight rises, ``strength = 1 - iw / 4`` clamped to [0.25, 1]:

  ===== ========= ===============================================
  --iw  strength  effect
  ===== ========= ===============================================
  0     1.0       the image is ignored (pure noise start)
  0.5   0.875     loose colours and composition
  1     0.75      the default: layout and palette of the image
  2     0.5       close to the image, the prompt restyles it
  3     0.25      (max) mostly the image, small changes
  ===== ========= ===============================================

Both render at the spec's size (``--ar``), snapped to the model's size step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image, ImageOps

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.ops.common import IMAGES_PER_JOB, RenderSettings, StepCallback, render

MIN_BLEND_IMAGES = 2
MAX_BLEND_IMAGES = 5
BLEND_STRENGTH = 0.8
"""img2img strength of a blend."""
MAX_IMAGE_PROMPTS = 5
DEFAULT_IMAGE_WEIGHT = 1.0
"""``--iw`` when the prompt gives none."""
MAX_IMAGE_WEIGHT = 3.0
MIN_IMAGE_STRENGTH = 0.25


def strength_for_image_weight(image_weight: float | None) -> float:
    """The img2img strength for an ``--iw`` value (see the module docstring's table).

    Raises:
        ValueError: a weight below 0 or above 3.
    """
    iw = DEFAULT_IMAGE_WEIGHT if image_weight is None else float(image_weight)
    if not 0.0 <= iw <= MAX_IMAGE_WEIGHT:
        raise ValueError(f"--iw must be between 0 and {MAX_IMAGE_WEIGHT:g}, got {iw:g}")
    return min(1.0, max(MIN_IMAGE_STRENGTH, 1.0 - iw / 4.0))


def output_size(pipe: DiffusionPipeline, spec: JobSpec, defaults: ModelDefaults | None) -> tuple[int, int]:
    """The spec's ``(width, height)`` snapped down to the model's size step."""
    step = defaults.size_step if defaults is not None else 8 * int(getattr(pipe, "vae_scale_factor", 8))
    return max(step, spec.width // step * step), max(step, spec.height // step * step)


def mix_images(images: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The pixel-wise mean of ``images``, each centre-cropped and resized to ``size``.

    Args:
        images: one or more images of any size and mode.
        size: ``(width, height)`` of the result.

    Returns:
        An RGB image of ``size``.
    """
    stack = [
        np.asarray(ImageOps.fit(im.convert("RGB"), size, Image.Resampling.LANCZOS), dtype=np.float32)
        for im in images
    ]
    mean = np.mean(stack, axis=0)
    return Image.fromarray(np.rint(mean).clip(0, 255).astype(np.uint8), "RGB")


def blend(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    sources: Sequence[Image.Image],
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    strength: float = BLEND_STRENGTH,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Blend 2-5 images into ``num_images`` new ones (seeds ``spec.seed + i``).

    Args:
        pipe: the model's pipeline (the img2img pipeline is derived from it).
        spec: the job; its size is the output size, its prompt (may be empty) guides.
        sources: the images to blend, 2 to 5, any sizes.
        defaults: the model's catalog defaults.
        num_images: images to render.
        strength: img2img strength from the mixed init image.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        The images in seed order and the render settings.

    Raises:
        ValueError: fewer than 2 or more than 5 sources.
    """
    if not MIN_BLEND_IMAGES <= len(sources) <= MAX_BLEND_IMAGES:
        raise ValueError(f"blend needs {MIN_BLEND_IMAGES} to {MAX_BLEND_IMAGES} images, got {len(sources)}")
    init = mix_images(sources, output_size(pipe, spec, defaults))
    return render(
        pipe,
        spec,
        defaults=defaults,
        num_images=num_images,
        image=init,
        strength=strength,
        callback_on_step_end=callback_on_step_end,
    )


def image_prompt(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    images: Sequence[Image.Image],
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    callback_on_step_end: StepCallback | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """``/imagine`` with image prompts: the images steer the render by ``spec.image_weight``.

    Args:
        pipe: the model's pipeline.
        spec: the job; ``image_weight`` (``--iw``) sets the strength, the prompt guides.
        images: the fetched images of ``spec.image_urls`` (1 to 5), in order.
        defaults: the model's catalog defaults.
        num_images: images to render.
        callback_on_step_end: diffusers' step callback for progress.
        extra: further pipeline arguments (``ip_adapter_image`` of ``--sref`` / ``--cref``).

    Returns:
        The images in seed order and the render settings.

    Raises:
        ValueError: no image, more than 5, or ``--iw`` out of range.
    """
    if not 1 <= len(images) <= MAX_IMAGE_PROMPTS:
        raise ValueError(f"an image prompt takes 1 to {MAX_IMAGE_PROMPTS} images, got {len(images)}")
    strength = strength_for_image_weight(spec.image_weight)
    init = mix_images(images, output_size(pipe, spec, defaults))
    return render(
        pipe,
        spec,
        defaults=defaults,
        num_images=num_images,
        image=init,
        strength=strength,
        callback_on_step_end=callback_on_step_end,
        extra=extra,
    )
