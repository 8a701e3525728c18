"""How well the built-in ``shapes`` model draws what a prompt asks for.

Run ``python -m bench.model_quality`` (or ``python bench/model_quality.py``). It renders the
held-out evaluation cases of :func:`gpu_worker.training.dataset.eval_pairs` (attribute
combinations the model never saw in training, each with its own seed) and scores every
image against the case's ground truth, then renders the same seeds with an empty prompt
and scores those against the same truth: the baseline, i.e. what the model draws when it
is told nothing (chance level).

The measurements (all on the RGB pixels, no learned model):

- **background colour**: the named colour nearest to most pixels of the image's 2-pixel
  border;
- **shape colour**: each pixel gets a *coverage* in [0, 1], its position on the line from
  the background colour (median of the border pixels of that name) to the shape colour
  (median of the pixels farther than half the largest distance from the background); the
  shape colour is the named colour nearest to the median of pixels with coverage >= 0.75;
- **shape class**: the fill ratio of the bounding box, ``sum(coverage) / (w * h)`` where
  ``w`` (``h``) sums the largest coverage of each column (row), which measures the box to a
  fraction of a pixel; about 1 is a square, pi/4 = 0.785 a circle, 1/2 a triangle, with
  the cut-offs halfway between (0.64 and 0.89);
- **position**: the centre of that bounding box (each column weighted by its largest
  coverage, each row likewise), in thirds of the width and height (left/centre/right x
  top/centre/bottom; "left" is the middle row's left third);
- **size** (reported, no target): ``sqrt(w * h)`` over the shorter image side, small
  below 0.32 (halfway between the named sizes 0.22 and 0.42).

An image with almost no coverage (no shape drawn) scores wrong on everything but the
background.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpu_worker.training.dataset import COLOURS, POSITIONS, SIZES, EvalPair, Scene, coverage_box, eval_pairs

ATTRIBUTES: tuple[str, ...] = ("background", "colour", "shape", "position", "size")
"""The scored attributes, in report order."""

TARGETS: dict[str, float] = {"background": 0.95, "colour": 0.90, "shape": 0.80, "position": 0.80}
"""The accuracy each attribute must reach on the shipped weights (size has no target)."""

MIN_SHAPE_PIXELS = 4.0
"""Total coverage below which an image counts as having no shape."""

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the measurements read off one image (the same names as :class:`Scene`)."""

    background: str
    colour: str | None
    shape: str | None
    position: str | None
    size: str | None
    fill_ratio: float
    coverage: float


def nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """Indices into the named colours of the nearest (Euclidean RGB) one, for ``(..., 3)`` pixels."""
    distances = np.linalg.norm(rgb[..., None, :].astype(np.float32) - _PALETTE, axis=-1)
    return np.asarray(distances.argmin(axis=-1))


def colour_name(rgb: Sequence[float] | np.ndarray) -> str:
    """The named colour nearest to one RGB triple."""
    return _NAMES[int(nearest_colour(np.asarray(rgb, dtype=np.float32)))]


def border_pixels(pixels: np.ndarray, width: int = 2) -> np.ndarray:
    """The ``(n, 3)`` pixels of the image's border, ``width`` pixels deep."""
    mask = np.ones(pixels.shape[:2], dtype=bool)
    mask[width:-width, width:-width] = False
    return np.asarray(pixels[mask], dtype=np.float32)


def coverage_map(pixels: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """The background's name, its measured colour, and each pixel's shape coverage in [0, 1].

    Args:
        pixels: an ``(H, W, 3)`` RGB image (uint8 or float in 0..255).
    """
    rgb = np.asarray(pixels, dtype=np.float32)
    border = border_pixels(rgb)
    names = nearest_colour(border)
    dominant = int(np.bincount(names, minlength=len(_NAMES)).argmax())
    background = np.median(border[names == dominant], axis=0)
    distance = np.linalg.norm(rgb - background, axis=-1)
    far = distance > 0.5 * max(float(distance.max()), 1e-6)
    if distance.max() < 40 or not far.any():
        return _NAMES[dominant], background, np.zeros(rgb.shape[:2], dtype=np.float32)
    foreground = np.median(rgb[far], axis=0)
    axis = foreground - background
    cover = ((rgb - background) @ axis) / float(axis @ axis)
    return _NAMES[dominant], background, np.clip(cover, 0.0, 1.0).astype(np.float32)


def read_image(pixels: np.ndarray) -> Reading:
    """Measure background colour, shape colour, class, position and size of one image."""
    rgb = np.asarray(pixels, dtype=np.float32)
    height, width = rgb.shape[:2]
    background, _, cover = coverage_map(rgb)
    total = float(cover.sum())
    if total < MIN_SHAPE_PIXELS:
        return Reading(background, None, None, None, None, 0.0, total)
    solid = cover >= 0.75
    colour = colour_name(np.median(rgb[solid], axis=0)) if solid.any() else None
    box_w, box_h, cx, cy = coverage_box(cover)
    ratio = total / max(box_w * box_h, 1e-6)
    shape = "triangle" if ratio < 0.64 else "circle" if ratio < 0.89 else "square"
    # The centre of the bounding box, not the centroid: a triangle's centroid sits a sixth
    # of its height below its box centre, which is what a position names.
    position = _position_name(cx / width, cy / height)
    small_cut = (SIZES["small"] + SIZES["large"]) / 2
    size = "small" if math.sqrt(box_w * box_h) / min(width, height) < small_cut else "large"
    return Reading(background, colour, shape, position, size, ratio, total)


def _position_name(fx: float, fy: float) -> str:
    column = "left" if fx < 1 / 3 else "right" if fx > 2 / 3 else "centre"
    row = "top" if fy < 1 / 3 else "bottom" if fy > 2 / 3 else "centre"
    if row == "centre":
        return column
    if column == "centre":
        return row
    name = f"{row} {column}"
    assert name in POSITIONS
    return name


def score(reading: Reading, scene: Scene) -> dict[str, bool]:
    """Which attributes of ``scene`` a reading got right."""
    return {
        "background": reading.background == scene.background,
        "colour": reading.colour == scene.colour,
        "shape": reading.shape == scene.shape,
        "position": reading.position == scene.position,
        "size": reading.size == scene.size,
    }


def accuracy(readings: Sequence[Reading], scenes: Sequence[Scene]) -> dict[str, float]:
    """The fraction right per attribute of :data:`ATTRIBUTES`."""
    if not scenes:
        raise ValueError("no scenes to score")
    totals = dict.fromkeys(ATTRIBUTES, 0)
    for reading, scene in zip(readings, scenes, strict=True):
        for name, ok in score(reading, scene).items():
            totals[name] += int(ok)
    return {name: totals[name] / len(scenes) for name in ATTRIBUTES}


def render(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    width: int = 64,
    height: int = 64,
    steps: int | None = None,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Render one image per (prompt, seed) with a diffusers text-to-image pipeline.

    Each image gets its own ``torch.Generator`` seeded with its seed, so an image does not
    depend on what else is in its batch.

    Args:
        pipe: a loaded ``StableDiffusionPipeline`` (or compatible).
        prompts: one prompt per image ("" for the unconditional baseline).
        seeds: one seed per image.
        width: image width.
        height: image height.
        steps: denoising steps (None: the model's documented default, 20).
        guidance_scale: classifier-free guidance (None: the model's default, 3.0).
        negative_prompt: one negative prompt for all images.
        batch_size: images per pipeline call.

    Returns:
        ``(height, width, 3)`` uint8 arrays, in order.
    """
    import torch

    from gpu_worker.training.components import DEFAULT_GUIDANCE, DEFAULT_STEPS

    images: list[np.ndarray] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[start : start + batch_size]]
        result = pipe(
            prompt=chunk,
            negative_prompt=[negative_prompt] * len(chunk) if negative_prompt else None,
            width=width,
            height=height,
            num_inference_steps=steps or DEFAULT_STEPS,
            guidance_scale=DEFAULT_GUIDANCE if guidance_scale is None else guidance_scale,
            generator=generators,
            output_type="np",
        )
        images.extend((np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in result.images)
    return images


def evaluate(
    pipe: Any,
    pairs: Sequence[EvalPair],
    *,
    steps: int | None = None,
    guidance_scale: float | None = None,
    baseline: bool = True,
) -> dict[str, dict[str, float]]:
    """Accuracies of ``pipe`` on ``pairs`` and, with ``baseline``, of the empty prompt on the same seeds."""
    scenes = [p.scene for p in pairs]
    width, height = scenes[0].width, scenes[0].height
    seeds = [p.seed for p in pairs]
    images = render(pipe, [p.prompt for p in pairs], seeds, width=width, height=height, steps=steps,
                    guidance_scale=guidance_scale)
    results = {"prompt": accuracy([read_image(im) for im in images], scenes)}
    if baseline:
        empty = render(pipe, [""] * len(pairs), seeds, width=width, height=height, steps=steps,
                       guidance_scale=guidance_scale)
        results["baseline"] = accuracy([read_image(im) for im in empty], scenes)
    return results


def default_model_dir() -> Path:
    """The shipped weights' folder (``gpu_worker/builtin/shapes``)."""
    import gpu_worker

    return Path(gpu_worker.__file__).resolve().parent / "builtin" / "shapes"


def load_pipeline(model_dir: Path) -> Any:
    """Load a diffusers folder with the standard text-to-image pipeline, offline, on the CPU."""
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(str(model_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None) -> int:
    """Print accuracy beside baseline per attribute; exit status 1 if a target is missed, 2 if there is no model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="diffusers folder (default: the shipped one)")
    parser.add_argument("--count", type=int, default=240, help="held-out cases (default 240)")
    parser.add_argument("--seed", type=int, default=1234, help="selects the cases (default: the benchmark's)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 20)")
    parser.add_argument("--cfg", type=float, default=None, help="guidance scale (default 3.0)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)

    import torch

    model_dir = args.model or default_model_dir()
    if not (model_dir / "model_index.json").is_file():
        print(f"no model to evaluate: {model_dir.name}/ holds no diffusers model (model_index.json); "
              "train one with python -m gpu_worker.training.train --out DIR and pass --model DIR")
        return 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    pipe = load_pipeline(model_dir)
    pairs = eval_pairs(args.count, seed=args.seed, width=args.width, height=args.height)
    results = evaluate(pipe, pairs, steps=args.steps, guidance_scale=args.cfg)
    elapsed = time.perf_counter() - started
    missed = [a for a, target in TARGETS.items() if results["prompt"][a] < target]
    if args.json:
        print(json.dumps({**results, "cases": len(pairs), "seconds": round(elapsed, 1), "missed": missed}))
    else:
        print(f"{len(pairs)} held-out cases at {args.width}x{args.height}, {elapsed:.0f} s")
        print(f"{'attribute':<12}{'prompt':>8}{'empty prompt':>14}{'target':>8}")
        for name in ATTRIBUTES:
            target = TARGETS.get(name)
            shown = f"{target:.0%}" if target is not None else "-"
            print(f"{name:<12}{results['prompt'][name]:>8.1%}{results['baseline'][name]:>14.1%}{shown:>8}")
        if missed:
            print("missed targets: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
