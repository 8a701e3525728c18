"""Train the ``shapes`` model's captioner (:mod:`gpu_worker.captioning.shapes`), resumably.

``python -m gpu_worker.training.captioner --out gpu_worker/builtin/shapes/captioner`` draws
training scenes of every size the model renders (held-out attribute combinations excluded,
as for the model), resizes them to the captioner's 64x64 input, and trains the classifier
with a cross-entropy loss per attribute. Each batch is roughened the way the model's own
pictures differ from the drawn scenes (a Gaussian blur of up to 1.2 pixels, noise, a small
colour shift), so that the captioner reads renders as well as drawings.

It then measures the share of exact descriptions (every attribute right) on held-out
scenes (the benchmark's combinations, at every training size) and writes ``captioner.json``
beside the weights: steps, seconds, threads, losses and those figures. A checkpoint in
``--work`` every 200 steps lets a stopped run resume.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gpu_worker.captioning.shapes import (
    ATTRIBUTES,
    INPUT_SIDE,
    CaptionerConfig,
    ShapesCaptioner,
    ShapesCaptionerNet,
    exact_rate,
    scene_attributes,
)
from gpu_worker.training.checkpoints import load_checkpoint, save_checkpoint
from gpu_worker.training.dataset import TRAIN_SIZES, Scene, draw_scene, eval_pairs, training_scenes

CHECKPOINT_EVERY = 200


def _draw(scenes: list[Scene]) -> torch.Tensor:
    """Scenes drawn and resized to the captioner's input, ``(N, 3, 64, 64)`` uint8."""
    arrays = [
        np.asarray(draw_scene(s).resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR), dtype=np.uint8)
        for s in scenes
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _labels(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor([names.index(scene_attributes(s)[name]) for s in scenes])
        for name, names in ATTRIBUTES.items()
    }


def _blur(pixels: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A separable Gaussian blur with one sigma per image (sigma 0 leaves it unchanged)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, 7)
    n, c, h, w = pixels.shape
    flat = pixels.reshape(1, n * c, h, w)
    weights = kernel.repeat_interleave(c, dim=0)
    flat = F.conv2d(
        F.pad(flat, (radius, radius, 0, 0), mode="replicate"), weights[:, None, None, :], groups=n * c
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, radius, radius), mode="replicate"), weights[:, None, :, None], groups=n * c
    )
    return flat.reshape(n, c, h, w)


def roughen(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 scenes to the network's [-1, 1] input, blurred, shifted and noised at random."""
    pixels = batch.float() / 127.5 - 1.0
    n = pixels.shape[0]
    sigma = torch.rand(n, generator=generator) * 1.2
    pixels = _blur(pixels, sigma)
    pixels = pixels + (torch.rand(n, 3, 1, 1, generator=generator) - 0.5) * 0.16
    pixels = (
        pixels
        + torch.randn(pixels.shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.08
    )
    return pixels.clamp(-1.0, 1.0)


def held_out_set(count: int, seed: int = 4321) -> tuple[list[Scene], list[Image.Image]]:
    """Held-out scenes (the benchmark's combinations) spread over every training size."""
    scenes: list[Scene] = []
    per_size = math.ceil(count / len(TRAIN_SIZES))
    for width, height in TRAIN_SIZES:
        scenes += [pair.scene for pair in eval_pairs(per_size, seed=seed, width=width, height=height)]
    scenes = scenes[:count]
    return scenes, [draw_scene(s) for s in scenes]


def train(
    out: Path, work: Path, *, steps: int, scenes: int, batch: int, seed: int, lr: float, log: bool = True
) -> dict[str, object]:
    """Train (or resume), save the captioner to ``out`` and return its figures."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    rng = random.Random(f"captioner:{seed}")
    per_size = scenes // len(TRAIN_SIZES)
    drawn = [s for w, h in TRAIN_SIZES for s in training_scenes(per_size, seed=seed, width=w, height=h)]
    rng.shuffle(drawn)
    pixels, labels = _draw(drawn), _labels(drawn)
    drawing_s = time.perf_counter() - started
    net = ShapesCaptionerNet(CaptionerConfig())
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / "captioner.pt"
    first, losses, seconds = load_checkpoint(checkpoint, net, optimizer)
    net.train()
    window: list[float] = []
    tick = time.perf_counter()
    for step in range(first, steps):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        index = torch.randint(0, len(drawn), (batch,), generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = (
                lr * 0.5 * (1 + math.cos(math.pi * step / steps)) if step >= 100 else lr * (step + 1) / 100
            )
        logits = net(roughen(pixels[index], generator))
        loss = sum(F.cross_entropy(logits[name], labels[name][index]) for name in ATTRIBUTES)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()
        window.append(loss.item())  # type: ignore[union-attr]
        if (step + 1) % 50 == 0:
            losses.append(round(sum(window) / len(window), 5))
            window = []
            if log:
                print(f"step {step + 1}/{steps} loss {losses[-1]:.4f}", flush=True)
        if (step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == steps:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            save_checkpoint(checkpoint, net, optimizer, step=step + 1, losses=losses, seconds=seconds)
    captioner = ShapesCaptioner(net)
    captioner.save(out)
    reloaded = ShapesCaptioner.load(out)  # measure what ships (float16 weights)
    held_scenes, held_images = held_out_set(1000)
    exact, per_attribute = exact_rate(reloaded, held_scenes, held_images)
    figures: dict[str, object] = {
        "steps": steps,
        "batch": batch,
        "training_scenes": len(drawn),
        "learning_rate": lr,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "drawing_seconds": round(drawing_s, 1),
        "training_seconds": round(seconds, 1),
        "loss_every_50_steps": losses,
        "held_out": {
            "images": len(held_images),
            "exact": round(exact, 4),
            "attributes": {k: round(v, 4) for k, v in per_attribute.items()},
        },
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    (out / "captioner.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the captioner folder to write")
    parser.add_argument("--work", type=Path, default=Path("data/captioner-training"), help="checkpoints")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--scenes", type=int, default=30000, help="training scenes, spread over the sizes")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    figures = train(
        args.out,
        args.work,
        steps=args.steps,
        scenes=args.scenes,
        batch=args.batch,
        seed=args.seed,
        lr=args.lr,
    )
    held = figures["held_out"]
    print(json.dumps(held))
    return 0


if __name__ == "__main__":
    sys.exit(main())
