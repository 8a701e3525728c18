"""The worker's table of operations: one function per :attr:`core.kinds.Recipe.operation`.

Each operation takes an :class:`OpContext` (the job's spec, recipe, model defaults, source
images, the warm pipeline cache, the step callback) and returns :class:`Operated`: the
images in seed order, how they were made, and the A1111 parameters the PNG text adds. The
renderer looks the job's recipe up in :mod:`core.kinds` and calls ``OPERATIONS[name]``; a
recipe whose operation is missing here is a rejected job, and ``tests/core/test_kinds.py``
keeps the two in step. The operations import their ``gpu_worker.ops`` modules (and so torch)
when first called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.kinds import Recipe
from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.failures import JobRejected


@dataclass(frozen=True, slots=True)
class Operated:
    """What an operation returned: images in seed order and how they were made."""

    images: list[Image.Image]
    settings: Any
    """:class:`gpu_worker.ops.common.RenderSettings`."""
    extra: dict[str, object]
    """Further A1111 parameters for the PNG text (``Chaos``, ``Denoising strength``, ...)."""
    prompts: tuple[str, ...] | None = None
    """What a describe operation read (it returns no images)."""
    lora: Any = None
    """What a training operation trained (:class:`gpu_worker.lora_training.TrainedLora`)."""


@dataclass(frozen=True, slots=True)
class OpContext:
    """What an operation works with."""

    recipe: Recipe
    spec: JobSpec
    defaults: ModelDefaults
    sources: list[Image.Image]
    pipelines: Any
    """The warm :class:`~gpu_worker.cache.PipelineCache` (``pipelines.job(spec, task)``)."""
    callback: Any
    upscaler: Callable[[], Any]
    """The model's upscaler (loaded on first use), or None."""
    captioner: Callable[[], Any] = lambda: None
    """The model's captioner (loaded on first use, :mod:`gpu_worker.captioning`), or None."""
    references: Any = None
    """The job's ``--sref`` / ``--cref`` pictures (:class:`gpu_worker.references.References`), or None."""
    controls: Callable[[Any], Any] = lambda pipe: None
    """``controls(pipe)``: the job's ``--cn`` ControlNets, maps and weights
    (:class:`gpu_worker.control.ControlCall`) for the loaded pipeline."""
    training: Any = None
    """A training job's request, work folder and hooks (:class:`gpu_worker.ops.train_lora.TrainingContext`)."""

    @property
    def source(self) -> Image.Image:
        """The one image a job made from an earlier image starts from."""
        if not self.sources:
            raise JobRejected("this job needs an image to start from, and it has none")
        return self.sources[0]


Operation = Callable[[OpContext], Operated]


def imagine(ctx: OpContext) -> Operated:
    """Four images from the prompt; with image prompts, from those images and the prompt;
    with ``--cn``, guided by ControlNets that follow the prompt's pictures; with ``--sref`` /
    ``--cref``, conditioned on the references through the model's IP-Adapters (or, without
    one, starting from them as image prompts: :mod:`gpu_worker.references`)."""
    from contextlib import nullcontext
    from dataclasses import replace

    spec, sources, said = ctx.spec, list(ctx.sources), {}
    refs = ctx.references
    if refs is not None:
        fallback, weight, said = refs.fallback(spec)
        said = {**said, **refs.said(spec)}
        if fallback and spec.controls:
            raise JobRejected(
                "on this model --sref/--cref pictures are image prompts (it has no IP-Adapter for them), "
                "and a --cn render takes none; remove one of them"
            )
        sources += fallback
        if fallback and spec.image_weight is None:
            spec = replace(spec, image_weight=weight)
    if len(sources) > 5:
        raise JobRejected("image prompts and references that act as image prompts come to more than 5 pictures")
    task = "img2img" if sources and not spec.controls else "text2img"
    with ctx.pipelines.job(spec, task) as pipe, (refs.applied(pipe, spec) if refs else nullcontext({})) as extra:
        if spec.controls:
            from gpu_worker.ops.imagine import imagine as run

            images, settings = run(
                pipe, spec, defaults=ctx.defaults, callback_on_step_end=ctx.callback, controls=ctx.controls(pipe),
                extra=extra,
            )
            used = ", ".join(f"{c.kind}{'(as is)' if c.as_is else ''} {c.weight:g}" for c in spec.controls)
            return Operated(images, settings, {"ControlNet": used, **said, **({"Chaos": spec.chaos} if spec.chaos else {})})
        if sources:
            from gpu_worker.ops.blend import image_prompt, strength_for_image_weight

            images, settings = image_prompt(
                pipe, spec, sources, defaults=ctx.defaults, callback_on_step_end=ctx.callback, extra=extra
            )
            return Operated(
                images, settings, {"Denoising strength": strength_for_image_weight(spec.image_weight), **said}
            )
        from gpu_worker.ops.imagine import imagine as run

        images, settings = run(pipe, spec, defaults=ctx.defaults, callback_on_step_end=ctx.callback, extra=extra)
    return Operated(images, settings, {**said, **({"Chaos": spec.chaos} if spec.chaos else {})})


def blend(ctx: OpContext) -> Operated:
    from gpu_worker.ops.blend import BLEND_STRENGTH
    from gpu_worker.ops.blend import blend as run

    with ctx.pipelines.job(ctx.spec, "img2img") as pipe:
        images, settings = run(
            pipe, ctx.spec, ctx.sources, defaults=ctx.defaults, callback_on_step_end=ctx.callback
        )
    return Operated(images, settings, {"Denoising strength": BLEND_STRENGTH})


def variation(ctx: OpContext) -> Operated:
    from gpu_worker.ops.variation import VARIATION_STRENGTH
    from gpu_worker.ops.variation import variation as run

    strength = str(ctx.recipe.arg)
    with ctx.pipelines.job(ctx.spec, "img2img") as pipe:
        images, settings = run(
            pipe,
            ctx.spec,
            ctx.source,
            kind=strength,  # type: ignore[arg-type]
            defaults=ctx.defaults,
            callback_on_step_end=ctx.callback,
        )
    return Operated(images, settings, {"Denoising strength": VARIATION_STRENGTH[strength]})


def upscale(ctx: OpContext) -> Operated:
    from gpu_worker.ops.upscale import native_pixel_budget, upscale_strength
    from gpu_worker.ops.upscale import upscale as run

    kind, source = str(ctx.recipe.arg), ctx.source
    with ctx.pipelines.job(ctx.spec, "img2img") as pipe:
        strength = upscale_strength(kind, source.size, native_pixel_budget(pipe, ctx.defaults))
        image, settings = run(
            pipe,
            ctx.spec,
            source,
            kind=kind,  # type: ignore[arg-type]
            defaults=ctx.defaults,
            upscaler=ctx.upscaler(),
            callback_on_step_end=ctx.callback,
        )
    return Operated([image], settings, {"Denoising strength": strength})


def zoom(ctx: OpContext) -> Operated:
    from gpu_worker.ops.outpaint import zoom_out

    factor = float(ctx.recipe.arg)  # type: ignore[arg-type]
    with ctx.pipelines.job(ctx.spec, "inpaint") as pipe:
        images, settings = zoom_out(
            pipe,
            ctx.spec,
            ctx.source,
            factor=factor,
            defaults=ctx.defaults,
            callback_on_step_end=ctx.callback,
        )
    return Operated(images, settings, {"Zoom out": ctx.recipe.variant})


def square(ctx: OpContext) -> Operated:
    from gpu_worker.ops.outpaint import make_square

    with ctx.pipelines.job(ctx.spec, "inpaint") as pipe:
        images, settings = make_square(
            pipe, ctx.spec, ctx.source, defaults=ctx.defaults, callback_on_step_end=ctx.callback
        )
    return Operated(images, settings, {"Outpaint": "square"})


def pan(ctx: OpContext) -> Operated:
    from gpu_worker.ops.outpaint import pan as run

    direction = str(ctx.recipe.arg)
    with ctx.pipelines.job(ctx.spec, "inpaint") as pipe:
        images, settings = run(
            pipe,
            ctx.spec,
            ctx.source,
            direction=direction,  # type: ignore[arg-type]
            defaults=ctx.defaults,
            callback_on_step_end=ctx.callback,
        )
    return Operated(images, settings, {"Pan": direction})


def region(ctx: OpContext) -> Operated:
    """Vary (Region): one of the preset boxes, or a mask the member painted (a second source,
    white: repaint; drawn at the picture's size in the web editor)."""
    from gpu_worker.ops.outpaint import region_mask, vary_region

    source = ctx.source
    box = ctx.recipe.arg
    if isinstance(box, tuple):
        mask = region_mask(source.size, box)
    else:
        if len(ctx.sources) < 2:
            raise JobRejected("this region was to be drawn, and its mask is gone")
        mask = ctx.sources[1].convert("L").resize(source.size, Image.Resampling.BILINEAR)
        if mask.point(lambda v: 255 if v > 127 else 0).getbbox() is None:
            raise JobRejected("the mask selects nothing: paint where the picture should change")
    with ctx.pipelines.job(ctx.spec, "inpaint") as pipe:
        images, settings = vary_region(
            pipe, ctx.spec, source, mask, defaults=ctx.defaults, callback_on_step_end=ctx.callback
        )
    return Operated(images, settings, {"Region": ctx.recipe.variant})


def masked_edit(ctx: OpContext) -> Operated:
    """/edit with a mask: the member's picture repainted where their mask is white, at the
    model's size for the picture's shape; every pixel outside the mask stays the picture's."""
    from core.sizes import aspect_of, size_for_aspect
    from gpu_worker.ops.outpaint import vary_region

    picture, mask = ctx.sources
    size = size_for_aspect(
        *aspect_of(picture.width, picture.height),
        pixel_budget=ctx.defaults.pixel_budget,
        step=ctx.defaults.size_step,
    )
    image = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    region = mask.convert("L").resize(size, Image.Resampling.BILINEAR)
    if region.point(lambda v: 255 if v > 127 else 0).getbbox() is None:
        raise JobRejected("the mask selects nothing: paint white where the picture should change")
    with ctx.pipelines.job(ctx.spec, "inpaint") as pipe:
        images, settings = vary_region(
            pipe, ctx.spec, image, region, defaults=ctx.defaults, callback_on_step_end=ctx.callback
        )
    return Operated(images, settings, {"Edit": "mask"})


def instruction_edit(ctx: OpContext) -> Operated:
    """/edit without a mask (or Edit… under an image): the picture changed as the prompt, an
    instruction, says, by a family with an editing pipeline, at the model's size for its shape."""
    from core.sizes import aspect_of, size_for_aspect
    from gpu_worker.ops.common import render

    source = ctx.source
    size = size_for_aspect(
        *aspect_of(source.width, source.height), pixel_budget=ctx.defaults.pixel_budget, step=ctx.defaults.size_step
    )
    with ctx.pipelines.job(ctx.spec, "edit") as pipe:
        images, settings = render(
            pipe, ctx.spec, defaults=ctx.defaults, size=size, reference=source, callback_on_step_end=ctx.callback
        )
    return Operated(images, settings, {"Edit": "instruction"})


def describe(ctx: OpContext) -> Operated:
    """Four prompts read from the source image by the model's captioner (no pipeline runs)."""
    from gpu_worker.captioning import describe_image

    captioner = ctx.captioner()
    if captioner is None:
        raise JobRejected(f"model {ctx.spec.model!r} has no captioner, so it cannot describe images")
    prompts = describe_image(captioner, ctx.source, seed=ctx.spec.seed or 0)
    if not prompts:
        raise JobRejected("the captioner found nothing to say about this image")
    return Operated([], None, {}, prompts=tuple(prompts))


def train_lora(ctx: OpContext) -> Operated:
    """A LoRA from the training job's pictures, and four samples drawn with it (:mod:`gpu_worker.ops.train_lora`)."""
    from gpu_worker.ops.train_lora import train

    samples, settings, extra, trained = train(ctx.pipelines, ctx.spec, ctx.defaults, ctx.sources, ctx.training,
                                              captioner=ctx.captioner())
    return Operated(samples, settings, extra, lora=trained)


OPERATIONS: dict[str, Operation] = {
    "imagine": imagine,
    "blend": blend,
    "variation": variation,
    "upscale": upscale,
    "zoom": zoom,
    "square": square,
    "pan": pan,
    "region": region,
    "describe": describe,
    "masked_edit": masked_edit,
    "instruction_edit": instruction_edit,
    "train_lora": train_lora,
}
"""Every operation a recipe may name."""
