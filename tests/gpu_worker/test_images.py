"""2x2 grids and PNGs carrying A1111 generation parameters."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.spec import PromptPart
from gpu_worker.images import (
    compose_grid,
    encode_png,
    format_parameters,
    parameters_for,
    parse_parameters,
    read_parameters,
)
from gpu_worker.ops.common import RenderSettings
from tests.gpu_worker.conftest import tiny_spec


def test_grid_puts_four_images_in_two_rows_in_order() -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    grid = compose_grid([Image.new("RGB", (32, 24), c) for c in colours])
    assert grid.size == (64, 48)
    assert [grid.getpixel(xy) for xy in [(5, 5), (40, 5), (5, 30), (40, 30)]] == colours
    assert compose_grid([Image.new("RGB", (8, 8))] * 3).size == (16, 16)
    with pytest.raises(ValueError, match="share one size"):
        compose_grid([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 9))])
    with pytest.raises(ValueError, match="at least one image"):
        compose_grid([])


def test_parameters_text_is_a1111s_format() -> None:
    spec = tiny_spec("a red fox, (snow:1.2)", negative_prompt="blurry", clip_skip=2)
    settings = RenderSettings(
        width=512, height=768, steps=20, cfg=7.0, sampler="Euler a", seeds=(42, 43, 44, 45)
    )
    text = parameters_for(spec, settings, seed=43, model="tiny")
    assert text == (
        "a red fox, (snow:1.2)\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 43, Size: 512x768, Model: tiny, Clip skip: 2"
    )


def test_png_round_trips_the_parameters_and_the_pixels() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    text = format_parameters(
        "un renard roux, « neige » 🦊\nsecond line",
        "blurry, lowres",
        {"Steps": 4, "Sampler": "DPM++ 2M Karras", "CFG scale": 6.5, "Seed": 7, "Model": 'my, "odd": model'},
    )
    data = encode_png(image, text)
    assert read_parameters(data) == text
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(image))
    parsed = parse_parameters(read_parameters(Image.open(io.BytesIO(data))) or "")
    assert parsed.prompt == "un renard roux, « neige » 🦊\nsecond line"
    assert parsed.negative_prompt == "blurry, lowres"
    assert parsed.settings == {
        "Steps": "4",
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": "6.5",
        "Seed": "7",
        "Model": 'my, "odd": model',
    }


def test_png_without_parameters_reads_none_and_prompt_only_text_parses() -> None:
    assert read_parameters(encode_png(Image.new("RGB", (4, 4)))) is None
    spec = tiny_spec(parts=(PromptPart("cat", 2.0), PromptPart("dog", 1.0)))
    settings = RenderSettings(32, 32, 2, 7.0, None, (1,))
    parsed = parse_parameters(parameters_for(spec, settings, seed=1, model="tiny"))
    assert parsed.prompt == "cat::2 dog::1" and parsed.negative_prompt == ""
    assert "Sampler" not in parsed.settings and parsed.settings["Seed"] == "1"
