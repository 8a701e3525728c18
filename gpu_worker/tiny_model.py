"""Tiny pipelines with random weights, built offline from config.

The classes are the real ones of each family (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``), only the sizes
are small (the sizes of diffusers' own ``get_dummy_components``), so every code path that runs
on a real checkpoint runs here in seconds on a CPU. The pipelines draw noise, not pictures:
they are the project's offline test model and the fixture of the worker's tests. Each
family's adapter builds its own (``tiny`` in ``gpu_worker/families/``).

Building is deterministic: the same family and seed give the same weights, and
:func:`write_tiny_model` writes byte-identical ``.safetensors`` files for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from gpu_worker.families import ADAPTERS, adapter

TinyFamily = str
"""A family name whose adapter builds a tiny pipeline (one of :data:`TINY_FAMILIES`)."""

TINY_FAMILIES: tuple[str, ...] = tuple(a.families[0].value for a in ADAPTERS if a.tiny is not None)
"""The families whose adapter builds a tiny pipeline."""


def build_tiny_pipeline(family: TinyFamily, *, seed: int = 0) -> DiffusionPipeline:
    """Build a tiny pipeline of the family's real diffusers classes with random weights.

    Sizes are those of diffusers' own pipeline tests: the SD 1.5 and SDXL UNets work on
    32x32 latents of a VAE that downsamples by 2 (64x64 images); the SD 3.5 and FLUX
    transformers' VAEs do not downsample.

    Args:
        family: one of :data:`TINY_FAMILIES` (``"sd15"``, ``"sdxl"``, ``"sd3"``, ``"flux"``).
        seed: seeds the random weights; the same seed gives the same weights.

    Returns:
        The family's text-to-image pipeline on the CPU in float32, with no safety checker.

    Raises:
        ValueError: a family without a tiny pipeline.
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}; expected one of {', '.join(TINY_FAMILIES)}")
    build = adapter(family).tiny
    assert build is not None
    return cast(DiffusionPipeline, build(seed))


def write_tiny_model(out_dir: str | Path, family: TinyFamily = "sd15", seed: int = 0) -> Path:
    """Write a tiny pipeline as a diffusers folder (``model_index.json`` + safetensors).

    Args:
        out_dir: the folder to write (created if missing; files in it are overwritten).
        family: one of :data:`TINY_FAMILIES`.
        seed: seeds the random weights; the same seed writes byte-identical weight files.

    Returns:
        ``out_dir`` as a ``Path``, loadable with ``DiffusionPipeline.from_pretrained``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(family, seed=seed)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_model_main(argv: list[str]) -> int:
    """``imaginarium build-tiny-model OUT_DIR [--family NAME] [--seed N]``.

    Args:
        argv: the command's arguments (without the command name).

    Returns:
        The exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="imaginarium build-tiny-model",
        description="Write the random-weights test model (a diffusers folder) without downloading anything.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the model to")
    parser.add_argument("--family", choices=TINY_FAMILIES, default="sd15", help="model shape (default: sd15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args(argv)
    out = write_tiny_model(args.out_dir, cast(TinyFamily, args.family), seed=args.seed)
    print(f"wrote tiny {args.family} model (seed {args.seed}) to {out}", file=sys.stdout)
    return 0
