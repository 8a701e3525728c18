"""/blend and image prompts (--iw) on the tiny model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from gpu_worker.ops.blend import blend, image_prompt, mix_images, strength_for_image_weight
from tests.gpu_worker.conftest import TINY_SIZE, tiny_spec


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (40, 24)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_mix_is_the_mean_of_the_cropped_sources() -> None:
    left_red = _solid((0, 0, 255), (64, 32))
    left_red.paste((255, 0, 0), (0, 0, 16, 32))  # a red strip that the square crop drops

    mixed = mix_images([left_red, _solid((0, 200, 0), (20, 20)), _solid((0, 100, 0), (32, 48))], (16, 16))

    assert mixed.size == (16, 16)
    np.testing.assert_allclose(_px(mixed).reshape(-1, 3).mean(axis=0), (0, 100, 85), atol=1)


def test_blend_renders_four_images_at_the_spec_size(tiny_sd15: Any) -> None:
    sources = [_solid((200, 40, 40)), _solid((40, 40, 200), (16, 48))]

    images, settings = blend(tiny_sd15, tiny_spec(), sources)

    assert [im.size for im in images] == [(TINY_SIZE, TINY_SIZE)] * 4
    assert settings.seeds == (42, 43, 44, 45)
    assert not np.array_equal(_px(images[0]), _px(images[1]))


def test_blend_works_without_a_prompt(tiny_sd15: Any) -> None:
    images, _ = blend(
        tiny_sd15, tiny_spec(parts=()), [_solid((10, 10, 10)), _solid((90, 90, 90))], num_images=1
    )

    assert len(images) == 1


@pytest.mark.parametrize("count", [0, 1, 6])
def test_blend_needs_two_to_five_images(tiny_sd15: Any, count: int) -> None:
    with pytest.raises(ValueError, match=f"blend needs 2 to 5 images, got {count}"):
        blend(tiny_sd15, tiny_spec(), [_solid((0, 0, 0))] * count)


@pytest.mark.parametrize(
    ("iw", "strength"), [(None, 0.75), (0.0, 1.0), (0.5, 0.875), (1.0, 0.75), (2.0, 0.5), (3.0, 0.25)]
)
def test_image_weight_maps_to_strength(iw: float | None, strength: float) -> None:
    assert strength_for_image_weight(iw) == pytest.approx(strength)


@pytest.mark.parametrize("iw", [-0.1, 3.5])
def test_image_weight_out_of_range_is_an_error(iw: float) -> None:
    with pytest.raises(ValueError, match="--iw must be between 0 and 3"):
        strength_for_image_weight(iw)


def test_higher_image_weight_keeps_more_of_the_image(tiny_sd15: Any) -> None:
    picture = Image.radial_gradient("L").convert("RGB").resize((48, 48))

    def timesteps_run(iw: float) -> list[int]:
        # The denoising starts where the image was re-noised to: the more the image weighs,
        # the less noise destroys it and the fewer steps redraw it. (The tiny model's random
        # VAE encodes everything close to zero, so the pixels themselves cannot show this.)
        seen: list[int] = []

        def record(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            seen.append(int(timestep))
            return tensors

        image_prompt(
            tiny_sd15,
            tiny_spec(image_weight=iw, steps=8),
            [picture],
            num_images=1,
            callback_on_step_end=record,
        )
        return seen

    light, heavy = timesteps_run(0.5), timesteps_run(3.0)

    assert len(light) == 7 and len(heavy) == 2  # strength 0.875 and 0.25 of 8 steps
    assert heavy[0] < light[0] / 2


def test_image_prompt_validates_its_images(tiny_sd15: Any) -> None:
    with pytest.raises(ValueError, match="1 to 5 images, got 0"):
        image_prompt(tiny_sd15, tiny_spec(), [])
    with pytest.raises(ValueError, match="--iw"):
        image_prompt(tiny_sd15, tiny_spec(image_weight=9.0), [_solid((0, 0, 0))])
