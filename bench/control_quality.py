"""How well the built-in ``shapes`` model's canny ControlNet moves a shape where its control says.

Run ``python -m bench.control_quality``. For each held-out case of ``bench/model_quality.py``
the control picture is the case's scene drawn at *another* named position (chosen by the
case's seed), and the model renders with the Canny edges of that picture
(:func:`gpu_worker.control.preprocess.canny`, the worker's own map). Where the rendered
shape is, is read from the pixels as ``bench/model_quality.py`` reads it. Three prompts:

- **moved**: the case's full prompt, which names its own position: the control must win
  against the words (target: the shape at the control's position in 80 % of seeds);
- **unsaid**: the prompt with its position left out;
- **baseline**: the unsaid prompt without the control (how often the shape lands at the
  control's position by chance).

Also printed: how often shape colour and class still match the prompt under the control.
Exit status 1 below the target, 2 without a ControlNet.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 0.80
"""Share of seeds whose shape is at the control's position (the moved prompts)."""


def _without_position(prompt: str) -> str:
    from gpu_worker.training.dataset import _POSITION_PHRASES

    phrases = sorted((p for ps in _POSITION_PHRASES.values() for p in ps), key=len, reverse=True)
    for phrase in phrases:
        prompt = prompt.replace(phrase, "")
    return " ".join(prompt.replace(" ,", ",").split()).strip(" ,")


def load_controlnet(folder: Path | None, checkpoint: Path | None, unet: Any) -> Any:
    """The shipped ControlNet, another folder, or a trainer checkpoint (mid-run figures)."""
    import torch
    from diffusers.models.controlnets.controlnet import ControlNetModel

    if checkpoint is not None:
        from gpu_worker.training.control import controlnet_from_unet

        net = controlnet_from_unet(unet)
        net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["net"])
        return net.eval()
    assert folder is not None
    return ControlNetModel.from_pretrained(str(folder), use_safetensors=True).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=120, help="held-out cases (default 120)")
    parser.add_argument(
        "--controlnet", type=Path, default=None, help="a ControlNet folder (default: the shipped one)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="a trainer checkpoint instead of a folder"
    )
    parser.add_argument("--weight", type=float, default=1.0, help="controlnet_conditioning_scale (default 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from diffusers import StableDiffusionControlNetPipeline

    from bench.model_quality import default_model_dir, load_pipeline, read_image, render
    from gpu_worker.control.preprocess import canny
    from gpu_worker.training.dataset import POSITIONS, Scene, draw_scene, eval_pairs

    model_dir = default_model_dir()
    folder = args.controlnet or model_dir / "controlnet-canny"
    if args.checkpoint is None and not (folder / "config.json").is_file():
        print(
            f"no ControlNet to evaluate: {folder.name}/ holds none; train one with "
            "python -m gpu_worker.training.control --out DIR"
        )
        return 2
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = load_pipeline(model_dir)
    net = load_controlnet(folder, args.checkpoint, base.unet)
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=net)
    pipe.set_progress_bar_config(disable=True)

    pairs = eval_pairs(args.count)
    targets: list[Scene] = []
    for pair in pairs:
        rng = random.Random(pair.seed)
        position = rng.choice([p for p in POSITIONS if p != pair.scene.position])
        fx, fy = POSITIONS[position]
        s = pair.scene
        targets.append(
            Scene(
                s.shape,
                s.colour,
                s.background,
                position,
                s.size,
                s.width,
                s.height,
                fx * s.width,
                fy * s.height,
                s.extent,
            )
        )
    maps = [canny(draw_scene(t)) for t in targets]
    seeds = [p.seed for p in pairs]
    moved_prompts = [p.prompt for p in pairs]
    unsaid_prompts = [_without_position(p.prompt) for p in pairs]

    def controlled(prompts: list[str]) -> list[np.ndarray]:
        images: list[np.ndarray] = []
        for start in range(0, len(prompts), 16):
            chunk = prompts[start : start + 16]
            result = pipe(
                prompt=chunk,
                image=maps[start : start + 16],
                width=64,
                height=64,
                num_inference_steps=20,
                guidance_scale=3.0,
                controlnet_conditioning_scale=args.weight,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds[start : start + 16]],
                output_type="np",
            )
            images.extend(
                (np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in result.images
            )
        return images

    def shares(images: list[np.ndarray]) -> dict[str, float]:
        readings = [read_image(im) for im in images]
        n = len(readings)
        return {
            "at_control": sum(r.position == t.position for r, t in zip(readings, targets, strict=True)) / n,
            "at_prompt": sum(r.position == p.scene.position for r, p in zip(readings, pairs, strict=True))
            / n,
            "colour": sum(r.colour == p.scene.colour for r, p in zip(readings, pairs, strict=True)) / n,
            "shape": sum(r.shape == p.scene.shape for r, p in zip(readings, pairs, strict=True)) / n,
        }

    results = {
        "moved": shares(controlled(moved_prompts)),
        "unsaid": shares(controlled(unsaid_prompts)),
        "baseline": shares(render(base, unsaid_prompts, seeds)),
    }
    elapsed = time.perf_counter() - started
    missed = results["moved"]["at_control"] < TARGET
    if args.json:
        print(
            json.dumps(
                {
                    **results,
                    "cases": len(pairs),
                    "weight": args.weight,
                    "seconds": round(elapsed, 1),
                    "target": TARGET,
                    "missed": missed,
                }
            )
        )
    else:
        print(f"{len(pairs)} held-out cases, control weight {args.weight:g}, {elapsed:.0f} s")
        print(f"{'prompt':<10}{'at control':>12}{'at prompt':>11}{'colour':>8}{'shape':>8}")
        for name, row in results.items():
            print(
                f"{name:<10}{row['at_control']:>12.1%}{row['at_prompt']:>11.1%}{row['colour']:>8.1%}"
                f"{row['shape']:>8.1%}"
            )
        print(
            f"target: {TARGET:.0%} at the control's position with the moved prompts"
            + (" (missed)" if missed else "")
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
