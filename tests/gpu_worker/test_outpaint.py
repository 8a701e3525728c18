"""Zoom out, make square, pan and vary region on the tiny models (inpainting via from_pipe)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker.ops.outpaint import make_square, pan, prefill, vary_region, zoom_out
from tests.gpu_worker.conftest import TINY_SIZE, tiny_spec


@pytest.fixture(scope="module")
def source(tiny_sd15: Any) -> Image.Image:
    """A rendered 32x32 image (what a job's source would be)."""
    return tiny_sd15(
        "a red fox",
        num_inference_steps=2,
        height=TINY_SIZE,
        width=TINY_SIZE,
        generator=torch.Generator().manual_seed(3),
    ).images[0]


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _placed(source: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return _px(source.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("factor", [1.5, 2.0])
def test_zoom_out_keeps_the_source_in_the_centre(tiny_sd15: Any, source: Image.Image, factor: float) -> None:
    images, settings = zoom_out(tiny_sd15, tiny_spec(), source, factor=factor)

    assert len(images) == 4 and settings.seeds == (42, 43, 44, 45)
    assert all(im.size == source.size for im in images)
    w = source.width
    inner = w / factor
    x0, x1 = round((w - inner) / 2), round((w + inner) / 2)
    for im in images:
        np.testing.assert_array_equal(_px(im)[x0:x1, x0:x1], _placed(source, (x0, x0, x1, x1)))
    # The border is painted per seed, not copied.
    border = [_px(im)[:, :x0] for im in images]
    assert not np.array_equal(border[0], border[1])


def test_same_job_same_pixels(tiny_sd15: Any, source: Image.Image) -> None:
    first, _ = zoom_out(tiny_sd15, tiny_spec(), source, factor=2.0, num_images=1)
    again, _ = zoom_out(tiny_sd15, tiny_spec(), source, factor=2.0, num_images=1)

    np.testing.assert_array_equal(_px(first[0]), _px(again[0]))


def test_zoom_factor_is_validated(tiny_sd15: Any, source: Image.Image) -> None:
    for factor in (1.0, 2.5):
        with pytest.raises(ValueError, match="factor above 1 and at most 2"):
            zoom_out(tiny_sd15, tiny_spec(), source, factor=factor)


@pytest.mark.parametrize(
    ("direction", "size", "box"),
    [
        ("left", (48, 32), (16, 0, 48, 32)),
        ("right", (48, 32), (0, 0, 32, 32)),
        ("up", (32, 48), (0, 16, 32, 48)),
        ("down", (32, 48), (0, 0, 32, 32)),
    ],
)
def test_pan_extends_one_side_and_keeps_the_source(
    tiny_sd15: Any,
    source: Image.Image,
    direction: Any,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
) -> None:
    images, settings = pan(tiny_sd15, tiny_spec(), source, direction=direction, num_images=2)

    assert [im.size for im in images] == [size, size]
    assert (settings.width, settings.height) == size
    x0, y0, x1, y1 = box
    for im in images:
        np.testing.assert_array_equal(_px(im)[y0:y1, x0:x1], _px(source))


def test_pan_direction_is_validated(tiny_sd15: Any, source: Image.Image) -> None:
    with pytest.raises(ValueError, match="unknown pan direction 'north'"):
        pan(tiny_sd15, tiny_spec(), source, direction="north")  # type: ignore[arg-type]


def test_make_square_extends_the_short_side(tiny_sd15: Any, source: Image.Image) -> None:
    portrait = source.resize((32, 64))

    images, _ = make_square(tiny_sd15, tiny_spec(), portrait, num_images=2)

    assert all(im.size == (64, 64) for im in images)
    for im in images:
        np.testing.assert_array_equal(_px(im)[:, 16:48], _px(portrait))
    with pytest.raises(ValueError, match="already square"):
        make_square(tiny_sd15, tiny_spec(), source)


def test_vary_region_changes_only_the_masked_pixels(tiny_sd15: Any, source: Image.Image) -> None:
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (8, 8, 24, 24))

    images, _ = vary_region(tiny_sd15, tiny_spec(), source, mask, num_images=2)

    inside = np.asarray(mask) > 127
    for im in images:
        assert im.size == source.size
        np.testing.assert_array_equal(_px(im)[~inside], _px(source)[~inside])
        assert np.abs(_px(im)[inside] - _px(source)[inside]).mean() > 5


def test_vary_region_validates_the_mask(tiny_sd15: Any, source: Image.Image) -> None:
    with pytest.raises(ValueError, match="the mask is 16x16 but the image is 32x32"):
        vary_region(tiny_sd15, tiny_spec(), source, Image.new("L", (16, 16), 255))
    with pytest.raises(ValueError, match="empty"):
        vary_region(tiny_sd15, tiny_spec(), source, Image.new("L", source.size, 0))


def test_sdxl_outpaints_through_its_inpainting_pipeline(tiny_sdxl: Any, source: Image.Image) -> None:
    images, _ = pan(tiny_sdxl, tiny_spec(), source, direction="right", num_images=1)

    assert images[0].size == (48, 32)
    np.testing.assert_array_equal(_px(images[0])[:, :32], _px(source))


def test_prefill_continues_the_nearest_edge_colours() -> None:
    half = Image.new("RGB", (32, 32), (220, 30, 30))
    half.paste((30, 30, 220), (16, 0, 32, 32))  # red left half, blue right half

    right = _px(prefill((48, 32), half, (0, 0, 32, 32), seed=1))[:, 36:]
    left = _px(prefill((48, 32), half, (16, 0, 48, 32), seed=1))[:, :12]

    assert right[..., 2].mean() > 150 and right[..., 0].mean() < 100  # blue continues right
    assert left[..., 0].mean() > 150 and left[..., 2].mean() < 100  # red continues left
    assert right.std() > 10  # noise for texture, not a flat fill
    np.testing.assert_array_equal(_px(prefill((48, 32), half, (0, 0, 32, 32), seed=1))[:, :32], _px(half))
