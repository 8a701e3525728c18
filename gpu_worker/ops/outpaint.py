"""Zoom out, make square, pan and vary region: all inpainting on the job's own model.

Each operation builds a canvas, a mask (white = paint) and a "keep" region, then runs one
batched inpainting call (seeds ``spec.seed + i``) through
:func:`gpu_worker.ops.common.render`, which derives the inpainting pipeline from the cached
one with ``from_pipe`` (shared weights; a plain 4-channel text-to-image model works: its
latents outside the mask are reset to the re-noised source at every step). Afterwards the
kept pixels are pasted back from the source, so they are exactly the source's.

- **Zoom out** (1.5x, 2x): the source is shrunk by the factor into the centre of a canvas
  of its own size; the border is painted.
- **Make square**: the short side is extended on both ends to the long side.
- **Pan** (left/right/up/down): the canvas grows by half the image on that side.
- **Vary region**: the user's mask is repainted; everything outside it is kept.

The area to paint is prefilled (:func:`prefill`) with the colours of the source's nearest
edges, blurred, plus some noise, and denoised from strength :data:`OUTPAINT_STRENGTH`
rather than from pure noise: the model continues the picture's colours and light instead
of starting from grey. Canvases stay within :data:`MAX_GROWTH` times the model's pixel
budget (larger ones are scaled down, source included) and their sides are multiples of
the model's size step.

Longer than 400 lines on purpose: the four operations share one canvas plan, prefill and
render call, and are read against each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image, ImageDraw, ImageFilter

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.ops.common import FALLBACK_DEFAULTS, IMAGES_PER_JOB, RenderSettings, StepCallback, render

Direction = Literal["left", "right", "up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("left", "right", "up", "down")

ZOOM_FACTORS: tuple[float, ...] = (1.5, 2.0)
"""The zoom-out factors of the buttons; any factor in (1, 2] is accepted."""
PAN_EXTEND = 0.5
"""A pan adds this fraction of the image's width (or height) on its side."""
OUTPAINT_STRENGTH = 0.92
"""Denoising strength in the painted area: high enough for new content, low enough that the
prefill's colours carry through."""
REGION_STRENGTH = 0.9
"""Denoising strength inside a varied region."""
MAX_GROWTH = 2.25
"""A canvas may have at most this many times the model's pixel budget (1.5x per side)."""
PREFILL_NOISE = 24.0
"""Standard deviation (0-255 scale) of the noise added to the prefill."""


@dataclass(frozen=True, slots=True)
class OutpaintPlan:
    """A prepared canvas: what to paint, what to keep, and where the source sits.

    Attributes:
        canvas: the prefilled RGB canvas (the init image of the inpainting call).
        mask: ``L`` mask for the pipeline, white = paint; it reaches one latent pixel into
            the kept area so that the seam itself is painted.
        keep: ``L`` mask, white = pixels pasted back from ``source`` after the render.
        source: the source as placed on the canvas (canvas-sized, valid where ``keep`` is).
    """

    canvas: Image.Image
    mask: Image.Image
    keep: Image.Image
    source: Image.Image


def _size_step(pipe: DiffusionPipeline, defaults: ModelDefaults | None) -> int:
    if defaults is not None:
        return defaults.size_step
    # Without a catalog entry: 8 latent pixels, which every SD-family UNet divides cleanly.
    return 8 * int(getattr(pipe, "vae_scale_factor", 8))


def _snap(value: float, step: int) -> int:
    return max(step, int(value // step) * step)


def _place(
    source: Image.Image,
    natural: tuple[float, float],
    box: tuple[float, float, float, float],
    *,
    step: int,
    max_pixels: float,
) -> tuple[tuple[int, int], tuple[int, int, int, int], Image.Image]:
    """Fit a natural canvas into the pixel limit and step; return size, source box, resized source."""
    cw, ch = natural
    scale = min(1.0, math.sqrt(max_pixels / (cw * ch)))
    width, height = _snap(cw * scale, step), _snap(ch * scale, step)
    sx, sy = width / cw, height / ch
    x0, y0 = round(box[0] * sx), round(box[1] * sy)
    x1, y1 = round(box[2] * sx), round(box[3] * sy)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    placed = source.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
    return (width, height), (x0, y0, x1, y1), placed


def prefill(
    size: tuple[int, int],
    placed: Image.Image,
    box: tuple[int, int, int, int],
    *,
    seed: int,
    noise: float = PREFILL_NOISE,
) -> Image.Image:
    """A canvas with ``placed`` at ``box`` and the rest filled from its edges.

    Every outside pixel takes the colour of the nearest edge pixel of the source (edge
    replication), the fill is blurred so no stripes remain, and seeded Gaussian noise
    gives the model texture to work from.

    Args:
        size: ``(width, height)`` of the canvas.
        placed: the source, already resized to the box.
        box: ``(left, top, right, bottom)`` of the source on the canvas.
        seed: seeds the noise (same seed, same canvas).
        noise: the noise's standard deviation on the 0-255 scale.

    Returns:
        The RGB canvas; inside ``box`` it equals ``placed`` exactly.
    """
    width, height = size
    x0, y0, x1, y1 = box
    src = np.asarray(placed.convert("RGB"), dtype=np.float32)
    # Parts of the box that fall outside the canvas (never by construction) are cropped.
    pads = ((max(0, y0), max(0, height - y1)), (max(0, x0), max(0, width - x1)), (0, 0))
    filled = np.pad(src, pads, mode="edge")[:height, :width]
    radius = max(2.0, max(width, height) / 24)
    blurred = np.asarray(
        Image.fromarray(filled.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)),
        dtype=np.float32,
    )
    rng = np.random.default_rng(seed)
    out = blurred + rng.normal(0.0, noise, blurred.shape).astype(np.float32)
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    canvas.paste(placed.convert("RGB"), (x0, y0))
    return canvas


def _plan(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    natural: tuple[float, float],
    box: tuple[float, float, float, float],
    defaults: ModelDefaults | None,
) -> OutpaintPlan:
    budget = (defaults or FALLBACK_DEFAULTS).pixel_budget
    step = _size_step(pipe, defaults)
    size, (x0, y0, x1, y1), placed = _place(source, natural, box, step=step, max_pixels=budget * MAX_GROWTH)
    if spec.seed is None:
        raise ValueError("the job has no seed; seeds are drawn when the job is created")
    canvas = prefill(size, placed, (x0, y0, x1, y1), seed=spec.seed)
    keep = Image.new("L", size, 0)
    ImageDraw.Draw(keep).rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    # Paint one latent pixel into the source along every side that borders the new area.
    f = int(getattr(pipe, "vae_scale_factor", 8))
    width, height = size
    inner = (
        x0 + f if x0 > 0 else 0,
        y0 + f if y0 > 0 else 0,
        x1 - f if x1 < width else width,
        y1 - f if y1 < height else height,
    )
    mask = Image.new("L", size, 255)
    if inner[2] > inner[0] and inner[3] > inner[1]:
        ImageDraw.Draw(mask).rectangle((inner[0], inner[1], inner[2] - 1, inner[3] - 1), fill=0)
    full_source = Image.new("RGB", size)
    full_source.paste(placed, (x0, y0))
    return OutpaintPlan(canvas=canvas, mask=mask, keep=keep, source=full_source)


def _run(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    plan: OutpaintPlan,
    *,
    strength: float,
    defaults: ModelDefaults | None,
    num_images: int,
    callback_on_step_end: StepCallback | None,
) -> tuple[list[Image.Image], RenderSettings]:
    images, settings = render(
        pipe,
        spec,
        defaults=defaults,
        num_images=num_images,
        image=plan.canvas,
        mask_image=plan.mask,
        strength=strength,
        callback_on_step_end=callback_on_step_end,
    )
    out = []
    for im in images:
        painted = im.convert("RGB")
        if painted.size != plan.canvas.size:  # a pipeline that rounded the size itself
            painted = painted.resize(plan.canvas.size, Image.Resampling.LANCZOS)
        out.append(Image.composite(plan.source, painted, plan.keep))
    return out, settings


def zoom_out(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    factor: float,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    strength: float = OUTPAINT_STRENGTH,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Zoom out: ``source`` shrunk by ``factor`` in the centre, the new border painted.

    The result has the source's size (snapped to the model's size step), so each zoom
    shows ``factor`` times more scene at the same resolution.

    Args:
        pipe: the model's pipeline (the inpainting pipeline is derived from it).
        spec: the job: prompt (what to paint around), seed, steps, sampler...
        source: the image to zoom out from.
        factor: 1.5 or 2 for the buttons; anything in (1, 2] works.
        defaults: the model's catalog defaults (size step, pixel budget, steps, cfg).
        num_images: images to render (seeds ``spec.seed + i``).
        strength: denoising strength in the painted border.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        The images (the centre is the source, pixel for pixel) and the render settings.

    Raises:
        ValueError: a factor outside (1, 2].
    """
    if not 1.0 < factor <= 2.0:
        raise ValueError(f"zoom out needs a factor above 1 and at most 2, got {factor}")
    w, h = source.size
    iw, ih = w / factor, h / factor
    box = ((w - iw) / 2, (h - ih) / 2, (w + iw) / 2, (h + ih) / 2)
    plan = _plan(pipe, spec, source, (w, h), box, defaults)
    return _run(
        pipe,
        spec,
        plan,
        strength=strength,
        defaults=defaults,
        num_images=num_images,
        callback_on_step_end=callback_on_step_end,
    )


def make_square(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    strength: float = OUTPAINT_STRENGTH,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Make a landscape or portrait image square by painting both ends of its short side.

    Args:
        pipe: the model's pipeline.
        spec: the job.
        source: a non-square image.
        defaults: the model's catalog defaults.
        num_images: images to render.
        strength: denoising strength in the painted area.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        Square images with the source in the middle, and the render settings.

    Raises:
        ValueError: the source is already square.
    """
    w, h = source.size
    if w == h:
        raise ValueError("the image is already square")
    side = max(w, h)
    box = ((side - w) / 2, (side - h) / 2, (side + w) / 2, (side + h) / 2)
    plan = _plan(pipe, spec, source, (side, side), box, defaults)
    return _run(
        pipe,
        spec,
        plan,
        strength=strength,
        defaults=defaults,
        num_images=num_images,
        callback_on_step_end=callback_on_step_end,
    )


def pan(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    direction: Direction,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    strength: float = OUTPAINT_STRENGTH,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Extend ``source`` by half its width (or height) on one side.

    Args:
        pipe: the model's pipeline.
        spec: the job.
        source: the image to extend.
        direction: ``"left"``, ``"right"``, ``"up"`` or ``"down"``.
        defaults: the model's catalog defaults.
        num_images: images to render.
        strength: denoising strength in the new area.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        The wider (or taller) images, the source kept pixel for pixel on the opposite side,
        and the render settings.

    Raises:
        ValueError: an unknown direction.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown pan direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    w, h = source.size
    dw = w * PAN_EXTEND if direction in ("left", "right") else 0.0
    dh = h * PAN_EXTEND if direction in ("up", "down") else 0.0
    x0 = dw if direction == "left" else 0.0
    y0 = dh if direction == "up" else 0.0
    plan = _plan(pipe, spec, source, (w + dw, h + dh), (x0, y0, x0 + w, y0 + h), defaults)
    return _run(
        pipe,
        spec,
        plan,
        strength=strength,
        defaults=defaults,
        num_images=num_images,
        callback_on_step_end=callback_on_step_end,
    )


def region_mask(size: tuple[int, int], box: tuple[float, ...]) -> Image.Image:
    """The ``L`` mask (white = repaint) of a region of an image of ``size``.

    Args:
        size: ``(width, height)`` of the image.
        box: ``(left, top, right, bottom)`` as fractions of the image (the region recipes of
            :mod:`core.kinds` carry theirs).

    Raises:
        ValueError: not four fractions from 0 to 1 that enclose an area.
    """
    if len(box) != 4 or not all(0.0 <= v <= 1.0 for v in box) or box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError(f"a region is (left, top, right, bottom) as fractions of the image, not {box!r}")
    width, height = size
    left, top, right, bottom = box
    mask = Image.new("L", size, 0)
    mask.paste(255, (round(left * width), round(top * height), round(right * width), round(bottom * height)))
    return mask


def vary_region(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    mask: Image.Image,
    *,
    defaults: ModelDefaults | None = None,
    num_images: int = IMAGES_PER_JOB,
    strength: float = REGION_STRENGTH,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[list[Image.Image], RenderSettings]:
    """Repaint the masked region of ``source``; every pixel outside the mask stays the source's.

    The region is prefilled with a blur of itself plus noise (its colours stay, its details
    go), then inpainted under the spec's prompt (remix: the edited prompt).

    Args:
        pipe: the model's pipeline.
        spec: the job.
        source: the image to edit. A size that is not a multiple of the model's size step
            is resized to the nearest smaller multiple (the mask with it).
        mask: same size as ``source``; white (above mid-grey) = repaint.
        defaults: the model's catalog defaults.
        num_images: images to render.
        strength: denoising strength inside the region.
        callback_on_step_end: diffusers' step callback for progress.

    Returns:
        The images and the render settings.

    Raises:
        ValueError: the mask's size differs from the source's, or it selects nothing.
    """
    if mask.size != source.size:
        raise ValueError(
            f"the mask is {mask.width}x{mask.height} but the image is {source.width}x{source.height}"
        )
    step = _size_step(pipe, defaults)
    size = (_snap(source.width, step), _snap(source.height, step))
    image = source.convert("RGB")
    region = mask.convert("L")
    if size != source.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
        region = region.resize(size, Image.Resampling.NEAREST)
    region = region.point(lambda v: 255 if v > 127 else 0)
    if region.getbbox() is None:
        raise ValueError("the region to vary is empty: select part of the image")
    if spec.seed is None:
        raise ValueError("the job has no seed; seeds are drawn when the job is created")

    radius = max(2.0, max(size) / 24)
    blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    rng = np.random.default_rng(spec.seed)
    fill = Image.fromarray(
        (blurred + rng.normal(0.0, PREFILL_NOISE, blurred.shape)).clip(0, 255).astype(np.uint8), "RGB"
    )
    canvas = Image.composite(fill, image, region)
    # Repaint one latent pixel beyond the selection so that no partly selected latent
    # pixel keeps the old content; the paste-back restores everything outside it.
    f = int(getattr(pipe, "vae_scale_factor", 8))
    paint = region.filter(ImageFilter.MaxFilter(2 * f + 1))
    keep = region.point(lambda v: 255 - v)
    plan = OutpaintPlan(canvas=canvas, mask=paint, keep=keep, source=image)
    return _run(
        pipe,
        spec,
        plan,
        strength=strength,
        defaults=defaults,
        num_images=num_images,
        callback_on_step_end=callback_on_step_end,
    )
