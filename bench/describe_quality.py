"""How exactly ``/describe`` on the built-in ``shapes`` model reads pictures back into words.

Run ``python -m bench.describe_quality``. It scores the model's shipped captioner
(``gpu_worker/builtin/shapes/captioner``, trained with ``python -m
gpu_worker.training.captioner``) in three ways, each on pictures it never saw in training:

- **drawn scenes**: held-out attribute combinations (the benchmark's), drawn at every size
  the model renders; a description is *exact* when its best reading names all five
  attributes (background, shape colour, class, position, size) right. Target: 90 %.
- **the model's renders against their prompts**: the held-out cases of
  ``bench/model_quality.py`` rendered by the shipped model; this cannot exceed what the
  model draws right (its shape class is below its target), so it has no target;
- **the model's renders against the pixel readings** of ``bench/model_quality.py`` (what the
  pictures show, measured without a learned model): how often the two readers agree, per
  attribute.

Exit status 1 when drawn scenes miss the target, 2 when there is no captioner.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from PIL import Image

TARGET = 0.90
"""Exact descriptions of held-out drawn scenes the shipped captioner must reach."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scenes", type=int, default=1000, help="held-out drawn scenes (default 1000)")
    parser.add_argument(
        "--renders", type=int, default=240, help="held-out renders (default 240; 0 skips them)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from bench.model_quality import ATTRIBUTES, default_model_dir, load_pipeline, read_image, render
    from gpu_worker.captioning.shapes import ShapesCaptioner, best_scenes, exact_rate
    from gpu_worker.training.captioner import held_out_set
    from gpu_worker.training.dataset import eval_pairs

    model_dir = default_model_dir()
    folder = model_dir / "captioner"
    if not (folder / "config.json").is_file():
        print(
            f"no captioner to evaluate: {model_dir.name}/captioner/ holds none; "
            "train one with python -m gpu_worker.training.captioner --out DIR"
        )
        return 2
    torch.set_num_threads(args.threads)
    captioner = ShapesCaptioner.load(folder)
    started = time.perf_counter()
    scenes, images = held_out_set(args.scenes)
    exact, attributes = exact_rate(captioner, scenes, images)
    results: dict[str, object] = {
        "drawn": {"images": len(images), "exact": exact, "attributes": attributes},
    }
    if args.renders:
        pairs = eval_pairs(args.renders)
        pipe = load_pipeline(model_dir)
        pixels = render(pipe, [p.prompt for p in pairs], [p.seed for p in pairs])
        rendered = [Image.fromarray(p) for p in pixels]
        truth = [p.scene for p in pairs]
        prompt_exact, prompt_attributes = exact_rate(captioner, truth, rendered)
        agree = dict.fromkeys(ATTRIBUTES, 0)
        for reading, picture in zip(captioner.read(rendered), pixels, strict=True):
            best = best_scenes(reading, 1)[0]
            measured = read_image(picture)
            for name in ATTRIBUTES:
                agree[name] += best[name] == getattr(measured, name)
        results["renders"] = {
            "images": len(rendered),
            "exact_against_prompt": prompt_exact,
            "attributes_against_prompt": prompt_attributes,
            "agreement_with_pixel_readings": {k: v / len(rendered) for k, v in agree.items()},
        }
    elapsed = time.perf_counter() - started
    missed = exact < TARGET
    if args.json:
        print(json.dumps({**results, "seconds": round(elapsed, 1), "target": TARGET, "missed": missed}))
    else:
        print(
            f"drawn held-out scenes: {len(images)}, exact {exact:.1%} (target {TARGET:.0%}), {elapsed:.0f} s"
        )
        print(
            f"{'attribute':<12}{'drawn':>8}"
            + (f"{'render/prompt':>15}{'render/pixels':>15}" if args.renders else "")
        )
        renders = results.get("renders")
        for name in ATTRIBUTES:
            line = f"{name:<12}{attributes[name]:>8.1%}"
            if isinstance(renders, dict):
                line += f"{renders['attributes_against_prompt'][name]:>15.1%}"
                line += f"{renders['agreement_with_pixel_readings'][name]:>15.1%}"
            print(line)
        if isinstance(renders, dict):
            print(
                f"renders: exact against their prompts {renders['exact_against_prompt']:.1%} "
                f"({renders['images']} held-out cases of bench/model_quality.py)"
            )
        if missed:
            print("missed target: exact descriptions of drawn scenes")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
