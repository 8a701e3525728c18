"""``/imagine`` and reroll: four images from a prompt in one batched call.

**Chaos.** ``--chaos 0..100`` says how different the four images may be from each other
and from a literal reading of the prompt. Different seeds already give four different
compositions; chaos adds to that by moving each image's *prompt conditioning* by its own
random offset: image ``i``'s positive prompt embedding (and SDXL's pooled embedding)
becomes ``e + (chaos / 100) * CHAOS_SCALE * std(e) * n_i``, where ``n_i`` is standard
normal noise drawn from a generator seeded with ``seed_i ^ CHAOS_SALT`` (the image's
seed, salted so that the offset is not correlated with the image's latent noise). At
chaos 0 the prompt is followed as written; at 100 the offset is as large as the
embedding's own spread, so images wander far from the prompt and from each other. The
offset depends only on the seed, so a chaotic render is as reproducible as any other.
Models whose prompt is passed as text (FLUX) have no embeddings to move; for them chaos
changes nothing beyond the seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.ops.common import (
    IMAGES_PER_JOB,
    RenderSettings,
    StepCallback,
    prompt_kwargs_for,
    render,
    seeds_for,
    with_model_defaults,
)

CHAOS_MAX = 100
CHAOS_SCALE = 1.0
"""Offset size at ``--chaos 100``, in units of the embedding's standard deviation."""
CHAOS_SALT = 0x5EED_C4A0
"""Mixed into each image's seed for its chaos noise (see the module docstring)."""

_JITTERED = ("prompt_embeds", "pooled_prompt_embeds")


def apply_chaos(prompt_kwargs: Mapping[str, Any], chaos: int, seeds: list[int]) -> dict[str, Any]:
    """Offset each image's positive prompt embeddings by seeded noise scaled by ``chaos``.

    Args:
        prompt_kwargs: pipeline prompt arguments with one row per image (from
            :func:`gpu_worker.ops.common.prompt_kwargs_for`).
        chaos: 0..100 (clamped).
        seeds: the images' seeds, one per row.

    Returns:
        A new dict; unchanged (a copy) at chaos 0 or for text prompts.
    """
    out = dict(prompt_kwargs)
    amount = min(max(chaos, 0), CHAOS_MAX) / CHAOS_MAX * CHAOS_SCALE
    if amount == 0:
        return out
    for key in _JITTERED:
        emb = out.get(key)
        if not isinstance(emb, torch.Tensor):
            continue
        if emb.shape[0] != len(seeds):
            raise ValueError(f"{key} has {emb.shape[0]} rows for {len(seeds)} seeds")
        rows = []
        for row, seed in zip(emb, seeds, strict=True):
            gen = torch.Generator(device="cpu").manual_seed((int(seed) ^ CHAOS_SALT) & 0xFFFF_FFFF_FFFF)
            noise = torch.randn(row.shape, generator=gen, dtype=torch.float32)
            scale = row.float().std()
            rows.append((row.float() + amount * scale * noise.to(row.device)).to(row.dtype))
        out[key] = torch.stack(rows)
    return out


def imagine_arguments(
    pipe: DiffusionPipeline, spec: JobSpec, defaults: ModelDefaults | None, num_images: int = IMAGES_PER_JOB
) -> tuple[JobSpec, list[int], dict[str, Any]]:
    """An imagine job's spec with the model's defaults filled in, its seeds and its prompt
    arguments (one row per image, ``--chaos`` applied): what its pipeline call is made of,
    alone (:func:`imagine`) or beside other jobs (:func:`gpu_worker.ops.batch.imagine_batch`)."""
    seeds = seeds_for(spec.seed, num_images)
    filled = with_model_defaults(spec, defaults)
    return filled, seeds, apply_chaos(prompt_kwargs_for(pipe, filled, num_images), spec.chaos, seeds)


def imagine(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    callback_on_step_end: StepCallback | None = None,
    controls: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Four images (seeds ``spec.seed .. spec.seed+3``) for a prompt, in one batched call.

    Args:
        pipe: the model's pipeline (text-to-image, or any pipeline sharing its modules).
        spec: the job; ``chaos`` spreads the four images apart (module docstring).
        defaults: the model's catalog defaults.
        num_images: images to render (4 for the grid).
        callback_on_step_end: diffusers' step callback for progress.
        controls: ``--cn`` (:class:`gpu_worker.control.ControlCall`), or None.
        extra: further pipeline arguments (``ip_adapter_image`` of ``--sref`` / ``--cref``).

    Returns:
        The images in seed order and the resolved render settings.
    """
    filled, seeds, kwargs = imagine_arguments(pipe, spec, defaults, num_images)
    return render(
        pipe,
        filled,
        defaults=defaults,
        num_images=num_images,
        seeds=seeds,
        prompt_kwargs=kwargs,
        callback_on_step_end=callback_on_step_end,
        controls=controls,
        extra=extra,
    )


def reroll(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """The same prompt again: :func:`imagine` with the new seed the caller put in ``spec``."""
    return imagine(
        pipe, spec, defaults=defaults, num_images=num_images, callback_on_step_end=callback_on_step_end
    )
