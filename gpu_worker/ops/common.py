"""The one place where a spec becomes a diffusers pipeline call.

Every operation (imagine, variation, upscale, outpaint, blend, ...) ends in :func:`render`,
which turns a :class:`~core.spec.JobSpec` plus the model's defaults into one batched call:

- **Seeds.** Image ``i`` of a job uses seed ``spec.seed + i`` and its own CPU
  ``torch.Generator``, so the four images of ``/imagine`` come from one batched call and
  image ``i`` can be re-rendered alone with its seed. CPU generators draw the same noise
  on every device, which keeps seeds meaningful across machines.
- **Scheduler.** A fresh one per call (:func:`gpu_worker.schedulers.make_scheduler`),
  assigned for the call and the pipeline's own put back afterwards, so no solver state or
  sampler choice leaks from one job into the next.
- **Prompt.** :func:`gpu_worker.prompting.encode_prompt` (attention weights, long prompts,
  multi-prompts, clip skip); guidance from ``--cfg`` or the model default with
  ``--stylize`` applied (:func:`gpu_worker.guidance.guidance_for`).
- **Defaults.** Steps, guidance, sampler and clip skip left unset in the spec come from the
  model's catalog entry (:class:`core.models.ModelDefaults`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import torch
from diffusers.pipelines.auto_pipeline import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.families import adapter_of
from gpu_worker.guidance import guidance_for
from gpu_worker.prompting import encode_prompt
from gpu_worker.schedulers import make_scheduler
from gpu_worker.tiling import seamless

PipelineTask = Literal["text2img", "img2img", "inpaint", "edit"]

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]
"""diffusers' ``callback_on_step_end(pipe, step, timestep, tensors) -> tensors``."""

FALLBACK_DEFAULTS = ModelDefaults(pixel_budget=512 * 512, size_step=64, steps=25, cfg=7.0, sampler=None)
"""Defaults when a caller passes no model entry (tests, tools): SD 1.5's, with the pipeline's own scheduler."""

IMAGES_PER_JOB = 4
"""Images of an imagine/variation job (the 2x2 grid)."""

_TASK_CLASS_HINT = {"img2img": "Img2Img", "inpaint": "Inpaint"}


def as_task(pipe: DiffusionPipeline, task: PipelineTask) -> DiffusionPipeline:
    """The pipeline for ``task`` built on ``pipe``'s modules (no copy of any weight).

    Args:
        pipe: any loaded pipeline of the model (text-to-image, img2img or inpaint).
        task: ``"text2img"``, ``"img2img"`` or ``"inpaint"``.

    Returns:
        ``pipe`` itself when it already does ``task``, else the family's pipeline class for
        ``task`` (:mod:`gpu_worker.families`) made ``from_pipe(pipe)``, which shares the UNet,
        VAE and text encoders with ``pipe``. A pipeline of no known family goes through
        diffusers' ``AutoPipelineFor*``.

    Raises:
        ValueError: the pipeline's family has no pipeline for ``task``.
    """
    family = adapter_of(pipe)
    if family is not None:
        if family.task_of(pipe) == task:
            return pipe
        derived = family.pipeline_class(task).from_pipe(pipe)
    else:
        name = type(pipe).__name__
        hint = _TASK_CLASS_HINT.get(task)
        if (hint is None and not any(h in name for h in _TASK_CLASS_HINT.values())) or (hint and hint in name):
            return pipe
        if task == "img2img":
            derived = AutoPipelineForImage2Image.from_pipe(pipe)
        elif task == "inpaint":
            derived = AutoPipelineForInpainting.from_pipe(pipe)
        else:
            derived = AutoPipelineForText2Image.from_pipe(pipe)
    # from_pipe does not carry the progress-bar setting over; workers log progress themselves.
    derived.set_progress_bar_config(disable=True)
    return cast(DiffusionPipeline, derived)


def seeds_for(seed: int | None, count: int) -> list[int]:
    """Seeds ``seed, seed+1, ...`` for ``count`` images.

    Raises:
        ValueError: the spec has no seed (the bot draws one when it creates the job, so a
            job without one is a bug upstream, not something to paper over here).
    """
    if seed is None:
        raise ValueError("the job has no seed; seeds are drawn when the job is created")
    return [seed + i for i in range(count)]


def generators_for(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded with that image's seed."""
    return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """What :func:`render` resolved from the spec and the model defaults (for PNG metadata)."""

    width: int
    height: int
    steps: int
    cfg: float
    sampler: str | None
    seeds: tuple[int, ...]


def with_model_defaults(spec: JobSpec, defaults: ModelDefaults | None) -> JobSpec:
    """``spec`` with steps, sampler and clip skip filled in from the model where unset, and
    the model's house style (:func:`with_house_style`).

    ``--quality`` scales the steps (the model's default or ``--steps``): it buys render time,
    as it does in the price (:func:`core.costs.job_cost`). The result has quality 1, so that
    filling in twice changes nothing.

    Guidance is not filled in here: an explicit ``--cfg`` must stay distinguishable from
    the default so that ``--stylize`` applies only to the latter.
    """
    d = defaults or FALLBACK_DEFAULTS
    steps = spec.steps if spec.steps is not None else d.steps
    spec = replace(
        spec,
        steps=quality_steps(steps, spec.quality),
        quality=1.0,
        sampler=spec.sampler if spec.sampler is not None else d.sampler,
        clip_skip=spec.clip_skip if spec.clip_skip is not None else d.clip_skip,
    )
    return with_house_style(spec, d)


def with_house_style(spec: JobSpec, defaults: ModelDefaults) -> JobSpec:
    """``spec`` with the model's style words added to each prompt part and its negative
    prompt to the job's, unless the job asked ``--style raw``. The result is marked raw, so
    that applying it twice changes nothing."""
    if spec.raw or not defaults.has_house_style:
        return spec
    parts = spec.parts
    if defaults.style_prompt:
        parts = tuple(replace(p, text=_joined(p.text, defaults.style_prompt)) for p in spec.parts)
    negative = _joined(spec.negative_prompt, defaults.negative_prompt)
    return replace(spec, parts=parts, negative_prompt=negative, raw=True)


def _joined(first: str, second: str) -> str:
    return ", ".join(t for t in (first.strip(" ,"), second) if t)


def quality_steps(steps: int, quality: float) -> int:
    """The denoising steps a render at ``quality`` (0.25 to 2) runs instead of ``steps``."""
    return max(1, round(steps * quality))


def steps_for_strength(steps: int, strength: float) -> int:
    """Steps to request so that an img2img run at ``strength`` denoises at least one step.

    diffusers runs ``int(steps * strength)`` steps of an img2img call and fails at zero;
    a low step count with a low strength (2 steps at 0.2) would hit that.
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return max(steps, math.ceil(1.0 / strength - 1e-9))


def prompt_kwargs_for(pipe: DiffusionPipeline, spec: JobSpec, num_images: int) -> dict[str, Any]:
    """The prompt keyword arguments of a call rendering ``num_images`` images.

    A thin wrapper over :func:`gpu_worker.prompting.encode_prompt` that runs without
    autograd; its tensors have ``num_images`` rows, one per generator.
    """
    with torch.inference_mode():
        return encode_prompt(pipe, spec, num_images=num_images)


def render(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    seeds: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    image: Image.Image | Sequence[Image.Image] | None = None,
    mask_image: Image.Image | Sequence[Image.Image] | None = None,
    strength: float | None = None,
    prompt_kwargs: Mapping[str, Any] | None = None,
    callback_on_step_end: StepCallback | None = None,
    extra: Mapping[str, Any] | None = None,
    controls: Any = None,
    reference: Image.Image | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Render ``num_images`` images for ``spec`` in one batched pipeline call.

    The task follows from the inputs: no ``image`` is text-to-image, an ``image`` is
    img2img, an ``image`` with a ``mask_image`` is inpainting (white = repaint). The
    pipeline for it is derived from ``pipe`` with :func:`as_task`.

    Args:
        pipe: a loaded pipeline of the job's model.
        spec: the job; prompt, negative prompt, seed, steps, cfg, stylize, sampler and clip
            skip are used (size too, unless ``size`` or ``image`` says otherwise).
        defaults: the model's catalog defaults for what the spec leaves unset.
        num_images: images in the batch.
        seeds: one seed per image; default ``spec.seed + i``.
        size: ``(width, height)``; default the spec's size, or the init image's size for
            img2img/inpaint.
        image: init image(s) for img2img/inpaint: one for the whole batch or one per image.
        mask_image: the inpainting mask(s).
        strength: how much of the init image is re-noised (img2img/inpaint), in (0, 1].
        prompt_kwargs: precomputed prompt arguments with ``num_images`` rows (for
            operations that alter the embeddings, such as ``--chaos``); default
            :func:`prompt_kwargs_for`.
        callback_on_step_end: diffusers' step callback (progress, previews, cancellation).
            If it has a ``tensor_inputs`` attribute, those tensors are passed to it.
        extra: further pipeline keyword arguments (they win over computed ones).
        controls: a :class:`gpu_worker.control.ControlCall` (``--cn``): the call runs on the
            family's ControlNet pipeline for the task, with its maps and weights.
        reference: the picture an instruction edit changes (the ``edit`` task of editing
            families: the pipeline reads it beside the latents; it is not a starting point).

    Returns:
        The PIL images, in seed order, and the resolved :class:`RenderSettings`.

    Raises:
        ValueError: bad inputs (no seed, wrong number of seeds or images, strength out
            of range, a size that is not a multiple of the VAE's factor).
    """
    spec = with_model_defaults(spec, defaults)
    d = defaults or FALLBACK_DEFAULTS
    seeds = list(seeds) if seeds is not None else seeds_for(spec.seed, num_images)
    if len(seeds) != num_images:
        raise ValueError(f"got {len(seeds)} seeds for {num_images} images")
    task: PipelineTask = "text2img" if image is None else ("inpaint" if mask_image is not None else "img2img")
    if reference is not None:
        task = "edit"
    if mask_image is not None and image is None:
        raise ValueError("a mask needs an init image")
    run_pipe = as_task(pipe, task)
    if controls is not None:
        from gpu_worker.control import control_pipeline

        run_pipe = control_pipeline(run_pipe, adapter_of(run_pipe), task, controls.model)
    assert spec.steps is not None
    steps = spec.steps
    cfg = guidance_for(spec, d.cfg)

    call: dict[str, Any] = {
        "num_inference_steps": steps,
        "guidance_scale": cfg,
        "generator": generators_for(seeds),
        "num_images_per_prompt": 1,
        "output_type": "pil",
    }
    call.update(prompt_kwargs if prompt_kwargs is not None else prompt_kwargs_for(run_pipe, spec, num_images))
    if image is None:
        width, height = size or (spec.width, spec.height)
        factor = int(getattr(run_pipe, "vae_scale_factor", 8))
        if width % factor or height % factor:
            raise ValueError(f"image size {width}x{height} is not a multiple of the model's factor {factor}")
        call.update(width=width, height=height)
        if reference is not None:
            call["image"] = reference.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    else:
        images = _per_image(image, num_images, "image")
        if size is not None:
            images = [im.resize(size, Image.Resampling.LANCZOS) if im.size != size else im for im in images]
        width, height = images[0].size
        call["image"] = images
        if strength is None:
            raise ValueError("img2img and inpainting need a strength")
        call["strength"] = strength
        call["num_inference_steps"] = steps = steps_for_strength(steps, strength)
        if mask_image is not None:
            call["mask_image"] = _per_image(mask_image, num_images, "mask_image")
            call.update(width=width, height=height)
        elif {"width", "height"} <= inspect.signature(run_pipe.__call__).parameters.keys():
            # Some img2img pipelines (Qwen-Image's) render at their default size, not the image's.
            call.update(width=width, height=height)
    if controls is not None:
        # The text-to-image ControlNet pipelines take the map as ``image``; the others as
        # ``control_image`` (``image`` is what they start from).
        named = getattr(adapter_of(run_pipe), "control_image_arg", "image") if task == "text2img" else "control_image"
        call[named] = controls.image
        call["controlnet_conditioning_scale"] = controls.scale
    if callback_on_step_end is not None:
        call["callback_on_step_end"] = callback_on_step_end
        inputs = getattr(callback_on_step_end, "tensor_inputs", None)
        if inputs:
            call["callback_on_step_end_tensor_inputs"] = list(inputs)
    if extra:
        call.update(extra)
    family = adapter_of(run_pipe)
    if family is not None and family.call_kwargs is not None:
        call = family.call_kwargs(run_pipe, call)

    scheduler = make_scheduler(spec.sampler, run_pipe)
    if spec.stop < 100:
        from gpu_worker.ops.early_stop import interrupt_when_stopped, stopping_scheduler

        scheduler = stopping_scheduler(scheduler, spec.stop)
        call["callback_on_step_end"] = interrupt_when_stopped(scheduler, call.get("callback_on_step_end"))
        inputs = getattr(call["callback_on_step_end"], "tensor_inputs", None)
        if inputs:
            call["callback_on_step_end_tensor_inputs"] = list(inputs)
    original = run_pipe.scheduler
    run_pipe.scheduler = scheduler
    try:
        # --tile: circular padding in the shared UNet and VAE layers, for this call only.
        with seamless(run_pipe, spec.tile), torch.inference_mode():
            result = cast(Any, run_pipe)(**call)
    finally:
        run_pipe.scheduler = original
    out = list(result.images)
    settings = RenderSettings(width, height, steps, cfg, spec.sampler, tuple(seeds))
    return out, settings


def _per_image(value: Image.Image | Sequence[Image.Image], count: int, what: str) -> list[Image.Image]:
    if isinstance(value, Image.Image):
        return [value.convert("RGB") if what == "image" else value] * count
    items = list(value)
    if len(items) != count:
        raise ValueError(f"got {len(items)} {what}s for {count} images")
    return [im.convert("RGB") if what == "image" else im for im in items]
