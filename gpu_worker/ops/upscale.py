"""Upscale (subtle / creative): one image at twice the size.

Two steps: first the image is resized to 2x (Lanczos, or a super-resolution model such as
ESRGAN when the model entry configures an ``upscaler``), then img2img at a low strength
re-draws fine detail that a resize cannot invent: 0.2 for subtle (stays faithful), 0.45 for
creative (adds detail, may change small things).

Diffusion models draw well only near their native pixel count; a 2x image of a model's
native size has four times as many pixels. So when the 2x image is larger than the
model's pixel budget, img2img runs on overlapping native-size tiles (batched, each with
its own seed ``spec.seed + i``) and the tiles are blended with linear ramps across the
overlaps, which hides the seams. Each tile is conditioned on the whole prompt, so at the
creative strength a model with a strong sense of composition draws the whole scene again
inside every tile (measured on the shipped ``shapes`` model: a 2x creative upscale at 0.45
differed from its source by 53/255 per pixel once shrunk back, at 0.3 by 10/255); tiles
therefore use the lower :data:`TILED_UPSCALE_STRENGTH`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from core.spec import JobSpec
from gpu_worker.ops.common import RenderSettings, StepCallback, render
from gpu_worker.registry import ModelLoadError, check_file

UpscaleKind = Literal["subtle", "creative"]
Upscaler = Callable[[Image.Image], Image.Image]
"""Resizes an image up (by its own factor); :func:`upscale` brings the result to exactly 2x."""

UPSCALE_STRENGTH: dict[str, float] = {"subtle": 0.2, "creative": 0.45}
"""img2img strength after the resize, when the 2x image is rendered in one piece."""
TILED_UPSCALE_STRENGTH: dict[str, float] = {"subtle": 0.2, "creative": 0.3}
"""img2img strength per tile, when the 2x image is over the model's budget."""
SCALE = 2
TILE_OVERLAP_FRACTION = 0.25
"""Overlap between neighbouring tiles, as a fraction of the tile side."""
TILE_BATCH = 4
"""Tiles rendered per pipeline call (bounded so that activations fit next to the weights)."""
BUDGET_SLACK = 1.05
"""An image this much over the pixel budget is still rendered in one piece."""


def native_pixel_budget(pipe: DiffusionPipeline, defaults: ModelDefaults | None) -> int:
    """Pixels the model renders well at once: the catalog's budget, else the UNet's native size."""
    if defaults is not None:
        return defaults.pixel_budget
    unet = getattr(pipe, "unet", None)
    sample = getattr(getattr(unet, "config", None), "sample_size", None)
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    side = int(sample) * factor if isinstance(sample, int) else 512
    return side * side


def upscale_strength(kind: str, source_size: tuple[int, int], budget: int) -> float:
    """The img2img strength :func:`upscale` uses for ``kind`` on an image of ``source_size``.

    Raises:
        ValueError: unknown kind.
    """
    if kind not in UPSCALE_STRENGTH:
        raise ValueError(f"unknown upscale kind {kind!r}; expected one of {', '.join(UPSCALE_STRENGTH)}")
    pixels = source_size[0] * SCALE * source_size[1] * SCALE
    return UPSCALE_STRENGTH[kind] if pixels <= budget * BUDGET_SLACK else TILED_UPSCALE_STRENGTH[kind]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)`` with at least ``overlap``.

    The last tile is aligned to the end, so every tile has the full side and the overlap
    of the last pair may be larger than ``overlap``.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ValueError(f"overlap {overlap} must be smaller than the tile side {tile}")
    count = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(count)]
    return sorted(set(starts))


def _ramp(size: int, start: int, end: int, before: int | None, after: int | None) -> np.ndarray:
    # Weights of one tile along one axis: 1 inside, rising linearly over the part shared
    # with the previous tile and falling over the part shared with the next one.
    w = np.ones(size, dtype=np.float64)
    if before is not None and before > start:
        n = before - start
        w[:n] = np.minimum(w[:n], (np.arange(n) + 0.5) / n)
    if after is not None and after < end:
        n = end - after
        w[size - n :] = np.minimum(w[size - n :], (n - np.arange(n) - 0.5) / n)
    return w


def blend_tiles(
    tiles: list[Image.Image], boxes: list[tuple[int, int]], size: tuple[int, int], tile: tuple[int, int]
) -> Image.Image:
    """Put tiles (top-left corners ``boxes``) back into one image, cross-fading the overlaps."""
    width, height = size
    tw, th = tile
    xs = sorted({x for x, _ in boxes})
    ys = sorted({y for _, y in boxes})
    acc = np.zeros((height, width, 3), dtype=np.float64)
    weight = np.zeros((height, width, 1), dtype=np.float64)
    for im, (x, y) in zip(tiles, boxes, strict=True):
        i, j = xs.index(x), ys.index(y)
        wx = _ramp(tw, x, x + tw, xs[i - 1] + tw if i > 0 else None, xs[i + 1] if i + 1 < len(xs) else None)
        wy = _ramp(th, y, y + th, ys[j - 1] + th if j > 0 else None, ys[j + 1] if j + 1 < len(ys) else None)
        w = (wy[:, None] * wx[None, :])[..., None]
        acc[y : y + th, x : x + tw] += np.asarray(im.convert("RGB"), dtype=np.float64) * w
        weight[y : y + th, x : x + tw] += w
    out = acc / np.maximum(weight, 1e-12)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def load_upscaler(
    path: Path, sha256: str | None = None, *, device: str | torch.device | None = None
) -> Upscaler:
    """Load a super-resolution model (ESRGAN, SwinIR, ... as ``.safetensors``) with spandrel.

    Args:
        path: the model file; pickle formats are refused.
        sha256: optional pin, checked before loading.
        device: where to run it (default: CUDA when available).

    Returns:
        A function from an image to the model's upscaled image.

    Raises:
        ModelLoadError: spandrel is not installed or does not import, or the file is not a
            single-image super-resolution model.
        IntegrityError: the sha256 pin does not match.
    """
    check_file(path, sha256, "upscaler")
    try:
        import spandrel
    except Exception as exc:  # ImportError, or spandrel failing on a mismatched torchvision
        raise ModelLoadError(
            f"upscaler {path}: the optional 'spandrel' package is needed for upscaler models "
            f"(pip install spandrel; it needs a torchvision matching torch): {exc}"
        ) from exc
    target = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    descriptor = spandrel.ModelLoader(device=target).load_from_file(str(path))
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"upscaler {path}: not a single-image super-resolution model")
    descriptor.eval()

    def run(image: Image.Image) -> Image.Image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(target)
        with torch.inference_mode():
            result = descriptor(tensor)
        out = result[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
        return Image.fromarray(np.rint(out * 255).astype(np.uint8))

    return run


def upscale(
    pipe: DiffusionPipeline,
    spec: JobSpec,
    source: Image.Image,
    *,
    kind: UpscaleKind = "subtle",
    defaults: ModelDefaults | None = None,
    upscaler: Upscaler | None = None,
    callback_on_step_end: StepCallback | None = None,
) -> tuple[Image.Image, RenderSettings]:
    """``source`` at twice its size, detail re-drawn by img2img (tiled when over budget).

    Args:
        pipe: the model's pipeline; the img2img pipeline is derived from it.
        spec: the job (prompt, seed, steps, ...); its size is ignored: the result is 2x
            ``source``.
        source: the image to upscale.
        kind: ``"subtle"`` (strength 0.2) or ``"creative"`` (0.45; 0.3 when tiled).
        defaults: the model's catalog defaults; its pixel budget and size step decide the
            tiles.
        upscaler: a super-resolution model for the resize step (:func:`load_upscaler`);
            None uses Lanczos.
        callback_on_step_end: diffusers' step callback; when tiled, it runs for each batch
            of tiles, its step count starting over per batch.

    Returns:
        The 2x image and the resolved render settings (of the last batch when tiled).

    Raises:
        ValueError: unknown kind.
    """
    budget = native_pixel_budget(pipe, defaults)
    strength = upscale_strength(kind, source.size, budget)
    target = (source.width * SCALE, source.height * SCALE)
    base = source.convert("RGB")
    if upscaler is not None:
        base = upscaler(base)
    if base.size != target:
        base = base.resize(target, Image.Resampling.LANCZOS)

    if target[0] * target[1] <= budget * BUDGET_SLACK:
        images, single = render(
            pipe,
            spec,
            defaults=defaults,
            num_images=1,
            image=base,
            strength=strength,
            callback_on_step_end=callback_on_step_end,
        )
        return images[0], single

    step = defaults.size_step if defaults is not None else 8
    side = max(step, math.isqrt(budget) // step * step)
    tw, th = min(side, target[0]), min(side, target[1])
    overlap_x = max(step, int(tw * TILE_OVERLAP_FRACTION) // step * step)
    overlap_y = max(step, int(th * TILE_OVERLAP_FRACTION) // step * step)
    boxes = [
        (x, y) for y in tile_starts(target[1], th, overlap_y) for x in tile_starts(target[0], tw, overlap_x)
    ]
    assert spec.seed is not None, "the job has no seed"
    tiles: list[Image.Image] = []
    settings: RenderSettings | None = None
    for first in range(0, len(boxes), TILE_BATCH):
        chunk = boxes[first : first + TILE_BATCH]
        crops = [base.crop((x, y, x + tw, y + th)) for x, y in chunk]
        out, settings = render(
            pipe,
            spec,
            defaults=defaults,
            num_images=len(chunk),
            seeds=[spec.seed + first + k for k in range(len(chunk))],
            image=crops,
            strength=strength,
            callback_on_step_end=callback_on_step_end,
        )
        tiles.extend(out)
    assert settings is not None
    blended = blend_tiles(tiles, boxes, target, (tw, th))
    # Report the final size, not the tiles'.
    return blended, replace(settings, width=target[0], height=target[1])
