"""Does a LoRA trained the way ``/train`` trains one teach the shipped model a new shape?

Run ``python -m bench.lora_training`` (2 CPU threads by default). It draws 12 pictures of a
shape the shipped ``shapes`` model never saw (a five-pointed star, or ``--shape heart``) in
assorted colours, backgrounds and places, captions each ``"a <colour> <trigger> on a <colour>
background"``, trains a LoRA on them with :class:`gpu_worker.lora_training.LoraTrainer` (the
worker's engine, same defaults but the step count), and then:

1. **trigger**: renders prompts with the trigger word in colour pairs it did not train on,
   one seed each, with the LoRA at weight 1, and scores each picture against the shape's
   template (below); the same prompts and seeds on the base model are the baseline;
2. **no harm**: ``bench/model_quality.py``'s held-out cases (no trigger) with the LoRA loaded
   through the render path (``load_lora_weights``) at weight 0, against the base model.

Targets (exit status 1 below any): training within 10 minutes, the shape in >= 70 % of the
trigger prompts, and every attribute of the no-harm check within 2 points of the base model.

**The template measurement**: the picture's shape coverage (``bench.model_quality``'s
coverage map: each pixel's place between the background colour and the shape colour) is
scaled up 4x and thresholded at 0.5; of the largest blob, the distance from its centroid to
its edge along 72 rays (every 5 degrees) is its *radial profile*, divided by its mean. The
same profile of each template (the trained shape, square, triangle, drawn large) is
correlated with it (Pearson), turned by up to 25 degrees either way; a profile that varies by
under 6 % is a circle's. The picture draws the shape when the trained shape's template
correlates best, at 0.6 or more. A five-pointed star's profile has five peaks, a square's
four, a triangle's three; rounded points (a blurry star) lower the peaks, not their places.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from bench.model_quality import ATTRIBUTES, coverage_map, default_model_dir, evaluate, load_pipeline
from gpu_worker.training.dataset import COLOURS, eval_pairs

TRIGGER = "zorbl"
TRAIN_IMAGES = 12
TARGETS = {"minutes": 10.0, "trigger": 0.70, "no_harm_points": 2.0}


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The outline of a star (five points, inner radius 0.45) or a heart around (cx, cy)."""
    if shape == "star":
        return [
            (cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
             cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5))
            for k in range(10)
        ]
    if shape == "heart":
        points = []
        for k in range(64):
            t = 2 * math.pi * k / 64
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            points.append((cx + x * r / 17, cy + y * r / 17))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def draw(shape: str, colour: str, background: str, cx: float, cy: float, r: float, size: int = 64) -> Image.Image:
    """One picture, anti-aliased the way the shipped model's training scenes are."""
    s = 4
    image = Image.new("RGB", (size * s, size * s), COLOURS[background])
    ImageDraw.Draw(image).polygon([(x * s, y * s) for x, y in shape_polygon(shape, cx, cy, r)], fill=COLOURS[colour])
    return image.resize((size, size), Image.Resampling.BOX)


def _pairs(rng: random.Random, count: int, exclude: set[tuple[str, str]]) -> list[tuple[str, str]]:
    names = list(COLOURS)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        colour, background = rng.choice(names), rng.choice(names)
        if colour != background and (colour, background) not in exclude and (colour, background) not in pairs:
            pairs.append((colour, background))
    return pairs


TRAIN_SEED = 7


def training_pairs() -> list[tuple[str, str]]:
    """The (colour, background) of each training picture."""
    return _pairs(random.Random(TRAIN_SEED), TRAIN_IMAGES, set())


def training_set(shape: str) -> list[tuple[Image.Image, str]]:
    """The 12 captioned pictures of the shape."""
    rng = random.Random(TRAIN_SEED + 1)
    made = []
    for colour, background in training_pairs():
        r = rng.uniform(15, 19)
        cx, cy = rng.uniform(24, 40), rng.uniform(24, 40)
        made.append((draw(shape, colour, background, cx, cy, r), f"a {colour} {TRIGGER} on a {background} background"))
    return made


ANGLES = 72
"""Rays of the radial profile (5 degrees apart)."""
MIN_CORRELATION = 0.6
MAX_TURN = 5
"""Rays the profile may be turned by to match (25 degrees either way)."""


def radial_profile(mask: np.ndarray) -> np.ndarray | None:
    """The distance from the blob's centroid to its edge along :data:`ANGLES` rays, divided by
    its mean (None for a blob too small to measure)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 12:
        return None
    cy, cx = ys.mean(), xs.mean()
    radii = []
    limit = float(max(mask.shape))
    for k in range(ANGLES):
        angle = 2 * math.pi * k / ANGLES - math.pi / 2
        dy, dx = math.sin(angle), math.cos(angle)
        r = 0.0
        while r < limit:
            y, x = round(float(cy + dy * (r + 0.25))), round(float(cx + dx * (r + 0.25)))
            if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]) or not mask[y, x]:
                break
            r += 0.25
        radii.append(r)
    profile = np.asarray(radii, dtype=np.float64)
    return profile / max(profile.mean(), 1e-6)


def _template(shape: str) -> np.ndarray:
    """The radial profile of ``shape`` drawn large and clean."""
    size = 256
    image = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(image)
    if shape == "circle":
        d.ellipse((28, 28, 228, 228), fill=255)
    elif shape == "square":
        d.rectangle((28, 28, 228, 228), fill=255)
    elif shape == "triangle":
        d.polygon([(128, 28), (228, 228), (28, 228)], fill=255)
    else:
        d.polygon(shape_polygon(shape, 128, 128, 100), fill=255)
    profile = radial_profile(np.asarray(image) >= 128)
    assert profile is not None
    return profile


def _mask(pixels: np.ndarray) -> np.ndarray:
    """The largest blob of shape coverage >= 0.5, at 4x the picture's resolution."""
    from scipy import ndimage

    _, _, cover = coverage_map(pixels)
    fine = ndimage.zoom(cover, 4, order=1) >= 0.5
    labels, count = ndimage.label(fine)
    if count == 0:
        return fine
    sizes = ndimage.sum(fine, labels, range(1, count + 1))
    return np.asarray(labels == (int(np.argmax(sizes)) + 1))


def read_shape(pixels: np.ndarray, candidates: Sequence[str]) -> tuple[str | None, float]:
    """The candidate whose template profile correlates best with the picture's shape, and
    that correlation (a circle's flat profile correlates with nothing: it is read as a circle
    when the profile varies by under 6 %)."""
    profile = radial_profile(_mask(pixels))
    if profile is None:
        return None, 0.0
    if profile.std() < 0.06:
        return "circle", 1.0
    scores = {}
    for name in candidates:
        if name == "circle":
            continue
        template = _template(name)
        scores[name] = max(float(np.corrcoef(profile, np.roll(template, turn))[0, 1])
                           for turn in range(-MAX_TURN, MAX_TURN + 1))
    best = max(scores, key=lambda n: scores[n])
    return best, scores[best]


def draws_shape(pixels: np.ndarray, shape: str) -> bool:
    found, score = read_shape(pixels, (shape, "circle", "square", "triangle"))
    return found == shape and score >= MIN_CORRELATION


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--shape", choices=("star", "heart"), default="star")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: what /train gives 12 pictures, core.training.training_steps)")
    parser.add_argument("--prompts", type=int, default=40, help="trigger prompts to score (default 40)")
    parser.add_argument("--quality-cases", type=int, default=240, help="no-harm cases (default 240, as model_quality)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="the denoiser's (default: the shipped model's, as /train uses; the text encoder's a quarter)")
    parser.add_argument("--work", type=Path, default=None, help="keep the LoRA and checkpoints here")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="write a PNG: training pictures, then the trigger prompts with the LoRA and on the base model")
    args = parser.parse_args(argv)

    import torch

    from core.training import training_steps
    from gpu_worker.lora_training import Example, LoraTrainer, LoraTrainingConfig

    args.steps = args.steps or training_steps(TRAIN_IMAGES)
    model_dir = default_model_dir()
    if not (model_dir / "model_index.json").is_file():
        print("no shipped model: gpu_worker/builtin/shapes/ holds no diffusers model (model_index.json)")
        return 2
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(model_dir)
    from gpu_worker.training.components import DEFAULT_GUIDANCE, DEFAULT_STEPS

    trainer = LoraTrainer(pipe, pixel_budget=64 * 64, size_step=16, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE)
    examples = [Example(image, caption) for image, caption in training_set(args.shape)]
    work = args.work or Path(tempfile.mkdtemp(prefix="lora-bench-"))
    from core.models_file import load_catalog

    rate = args.learning_rate or load_catalog(None, data_dir=work).get("shapes").defaults.lora_learning_rate
    config = LoraTrainingConfig(steps=args.steps, preview_every=0, learning_rate=rate,
                                text_encoder_learning_rate=rate / 4)
    started = time.perf_counter()
    last = [started]

    def report(p: Any) -> None:
        if p.step % 50 == 0 or p.step == p.total:
            print(f"  step {p.step}/{p.total} loss {p.loss:.4f} ({time.perf_counter() - last[0]:.0f} s)", flush=True)
            last[0] = time.perf_counter()

    print(f"training on {len(examples)} pictures of a {args.shape}, {args.steps} steps, {args.threads} threads", flush=True)
    trained = trainer.train(examples, config, work_dir=work, progress=report)
    minutes = (time.perf_counter() - started) / 60

    rng = random.Random(99)
    pairs = _pairs(rng, args.prompts, set(training_pairs()))
    prompts = [f"a {colour} {TRIGGER} on a {background} background" for colour, background in pairs]
    seeds = list(range(1000, 1000 + len(prompts)))
    with_lora = [np.asarray(im) for im in trainer.sample(trainer.trained_unet, trainer.trained_encoders,
                                                         prompts, seeds=seeds)]
    base = [np.asarray(im) for im in trainer.sample(pipe.unet, [pipe.text_encoder], prompts, seeds=seeds)]
    if args.sheet:
        rows = [[np.asarray(im) for im, _ in training_set(args.shape)], with_lora[:12], base[:12]]
        sheet = np.concatenate([np.concatenate(row + [np.zeros_like(row[0])] * (12 - len(row)), 1) for row in rows], 0)
        Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.Resampling.NEAREST).save(args.sheet)
    print("template fits with the LoRA: " + ", ".join(
        f"{name}:{iou:.2f}" for name, iou in (read_shape(p, (args.shape, "circle", "square", "triangle")) for p in with_lora)))
    hit = sum(draws_shape(p, args.shape) for p in with_lora) / len(prompts)
    base_hit = sum(draws_shape(p, args.shape) for p in base) / len(prompts)

    cases = eval_pairs(args.quality_cases)
    before = evaluate(pipe, cases, baseline=False)["prompt"]
    pipe.load_lora_weights(str(trained.path), adapter_name="bench")
    pipe.set_adapters(["bench"], adapter_weights=[0.0])
    after = evaluate(pipe, cases, baseline=False)["prompt"]
    worst = max(abs(after[a] - before[a]) * 100 for a in ATTRIBUTES)

    figures = {
        "shape": args.shape, "steps": args.steps, "train_minutes": round(minutes, 2),
        "final_loss": round(float(np.mean(trained.losses[-20:])), 4), "trigger_prompts": len(prompts),
        "trigger_hit": hit, "base_hit": base_hit, "no_harm_before": before, "no_harm_after": after,
        "no_harm_worst_points": round(worst, 2), "lora_bytes": trained.path.stat().st_size, "threads": args.threads,
    }
    print(f"trained {args.steps} steps in {minutes:.1f} min (target <= {TARGETS['minutes']:.0f}); "
          f"LoRA {trained.path.stat().st_size / 1e6:.2f} MB")
    print(f"{'measure':<34}{'with LoRA':>10}{'base':>8}{'target':>9}")
    print(f"{'trigger prompts drawing a ' + args.shape:<34}{hit:>10.1%}{base_hit:>8.1%}{'>= 70%':>9}")
    for name in ATTRIBUTES:
        print(f"{'no trigger, weight 0: ' + name:<34}{after[name]:>10.1%}{before[name]:>8.1%}{'+-2 pts':>9}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    missed = [name for name, bad in (("minutes", minutes > TARGETS["minutes"]), ("trigger", hit < TARGETS["trigger"]),
                                     ("no harm", worst > TARGETS["no_harm_points"])) if bad]
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
