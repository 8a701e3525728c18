"""Imagine, reroll, variation, remix and upscale on tiny SD 1.5 and SDXL pipelines (2 steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from core.spec import PromptPart
from gpu_worker.ops.common import render, steps_for_strength
from gpu_worker.ops.imagine import apply_chaos, imagine, reroll
from gpu_worker.ops.upscale import blend_tiles, tile_starts, upscale, upscale_strength
from gpu_worker.ops.variation import remix, variation
from gpu_worker.registry import ModelLoadError
from tests.gpu_worker.conftest import TINY_SIZE, TINY_STEPS, tiny_spec


def _px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def grid(tiny_pipe: DiffusionPipeline) -> list[Image.Image]:
    """The four imagine images of the default tiny spec (seed 42), per family."""
    images, _ = imagine(tiny_pipe, tiny_spec())
    return images


def test_imagine_renders_four_distinct_images_at_the_spec_size(
    tiny_pipe: DiffusionPipeline, grid: list[Image.Image]
) -> None:
    assert len(grid) == 4
    assert all(im.size == (TINY_SIZE, TINY_SIZE) and im.mode == "RGB" for im in grid)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(_px(grid[i]), _px(grid[j])), f"images {i} and {j} are identical"


def test_imagine_is_deterministic_and_reroll_with_a_new_seed_is_not_the_same(
    tiny_pipe: DiffusionPipeline, grid: list[Image.Image]
) -> None:
    again, settings = imagine(tiny_pipe, tiny_spec())
    assert all(np.array_equal(_px(a), _px(b)) for a, b in zip(grid, again, strict=True))
    assert settings.seeds == (42, 43, 44, 45) and settings.steps == TINY_STEPS

    rerolled, settings = reroll(tiny_pipe, tiny_spec(seed=1000), num_images=1)
    assert settings.seeds == (1000,)
    assert not np.array_equal(_px(rerolled[0]), _px(grid[0]))


def test_chaos_moves_each_image_by_seeded_noise(
    tiny_pipe: DiffusionPipeline, grid: list[Image.Image]
) -> None:
    chaotic, _ = imagine(tiny_pipe, tiny_spec(chaos=100), num_images=2)
    assert all(not np.array_equal(_px(a), _px(b)) for a, b in zip(grid, chaotic, strict=False))

    emb = torch.randn(4, 77, 32)
    kwargs = {"prompt_embeds": emb, "negative_prompt_embeds": emb.clone()}
    calm, wild, wild_again = (apply_chaos(kwargs, c, [1, 2, 3, 4]) for c in (0, 100, 100))
    assert torch.equal(calm["prompt_embeds"], emb)
    assert torch.equal(wild["prompt_embeds"], wild_again["prompt_embeds"])  # seeded, reproducible
    assert torch.equal(wild["negative_prompt_embeds"], emb)  # only the positive prompt moves
    offsets = (wild["prompt_embeds"] - emb).flatten(1)
    assert not torch.allclose(offsets[0], offsets[1])  # each image its own direction
    half = apply_chaos(kwargs, 50, [1, 2, 3, 4])["prompt_embeds"] - emb
    assert torch.allclose(half.flatten(1) * 2, offsets, atol=1e-5)


def test_variation_changes_the_source_and_is_deterministic(
    tiny_pipe: DiffusionPipeline, grid: list[Image.Image]
) -> None:
    source = grid[1]
    spec = tiny_spec(seed=7)
    first, settings = variation(tiny_pipe, spec, source, kind="subtle")
    second, _ = variation(tiny_pipe, spec, source, kind="subtle")
    assert len(first) == 4 and all(im.size == source.size for im in first)
    assert all(np.array_equal(_px(a), _px(b)) for a, b in zip(first, second, strict=True))
    assert all(not np.array_equal(_px(im), _px(source)) for im in first)
    assert not np.array_equal(_px(first[0]), _px(first[1]))
    assert settings.seeds == (7, 8, 9, 10)
    # 2 steps at strength 0.35 would denoise int(0.7) = 0 steps; the helper asks for enough.
    assert settings.steps == steps_for_strength(TINY_STEPS, 0.35) == 3


def test_strong_variation_and_remix_differ_from_subtle(tiny_sd15: DiffusionPipeline) -> None:
    source = Image.new("RGB", (TINY_SIZE, TINY_SIZE), (200, 40, 40))
    # 4 steps: subtle denoises 1 of them, strong 2 (at 2 steps both would denoise just the last).
    spec = tiny_spec(seed=3, steps=4)
    subtle, _ = variation(tiny_sd15, spec, source, kind="subtle", num_images=1)
    strong, _ = variation(tiny_sd15, spec, source, kind="strong", num_images=1)
    remixed, _ = remix(
        tiny_sd15,
        tiny_spec(seed=3, steps=4, parts=(PromptPart("a blue owl at night"),)),
        source,
        num_images=1,
    )
    assert not np.array_equal(_px(subtle[0]), _px(strong[0]))
    assert not np.array_equal(_px(remixed[0]), _px(strong[0]))
    with pytest.raises(ValueError, match="unknown variation kind 'wild'"):
        variation(tiny_sd15, spec, source, kind="wild")  # type: ignore[arg-type]


def test_upscale_doubles_the_size(tiny_pipe: DiffusionPipeline, grid: list[Image.Image]) -> None:
    big, settings = upscale(tiny_pipe, tiny_spec(), grid[0], kind="creative")
    assert big.size == (2 * TINY_SIZE, 2 * TINY_SIZE)
    assert (settings.width, settings.height) == big.size
    lanczos = grid[0].resize(big.size, Image.Resampling.LANCZOS)
    assert not np.array_equal(_px(big), _px(lanczos))  # img2img redrew detail


def test_upscale_over_the_pixel_budget_runs_in_tiles(tiny_sd15: DiffusionPipeline) -> None:
    source = Image.new("RGB", (TINY_SIZE, TINY_SIZE), (30, 120, 200))
    small_budget = ModelDefaults(
        pixel_budget=TINY_SIZE * TINY_SIZE, size_step=8, steps=TINY_STEPS, cfg=7.0, sampler=None
    )
    resized: list[tuple[int, int]] = []

    def nearest_4x(image: Image.Image) -> Image.Image:
        resized.append(image.size)
        return image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST)

    tiles_seen: list[int] = []

    def count(pipe: DiffusionPipeline, step: int, timestep: object, tensors: dict) -> dict:  # type: ignore[type-arg]
        tiles_seen.append(tensors["latents"].shape[0])
        return tensors

    big, settings = upscale(
        tiny_sd15, tiny_spec(), source, defaults=small_budget, upscaler=nearest_4x, callback_on_step_end=count
    )
    assert big.size == (64, 64) and (settings.width, settings.height) == (64, 64)
    assert resized == [(TINY_SIZE, TINY_SIZE)]
    # 64 px in 32 px tiles overlapping by 8: starts 0, 24, 32 per side -> 9 tiles in
    # batches of 4, 4 and 1, each batch denoising one step.
    assert tiles_seen == [4, 4, 1]


def test_tiles_cover_the_image_and_blend_back_without_seams() -> None:
    assert tile_starts(64, 32, 8) == [0, 24, 32]
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(100, 40, 10) == [0, 30, 60]
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    boxes = [(x, y) for y in tile_starts(48, 32, 8) for x in tile_starts(64, 32, 8)]
    tiles = [image.crop((x, y, x + 32, y + 32)) for x, y in boxes]
    assert np.array_equal(_px(blend_tiles(tiles, boxes, image.size, (32, 32))), _px(image))
    # Two flat tiles of different colour cross-fade across their overlap.
    left, right = Image.new("RGB", (32, 32), (0, 0, 0)), Image.new("RGB", (32, 32), (240, 240, 240))
    row = _px(blend_tiles([left, right], [(0, 0), (24, 0)], (56, 32), (32, 32)))[0, :, 0]
    assert row[0] == 0 and row[-1] == 240
    assert list(row[24:32]) == sorted(row[24:32]) and 0 < row[27] < 240


def test_tiled_creative_upscales_redraw_less() -> None:
    # In one piece (2x of 32x32 fits a 64x64 budget) the full strengths; in tiles, where
    # every tile sees the whole prompt, creative drops so tiles do not redraw the scene.
    assert upscale_strength("subtle", (32, 32), 64 * 64) == 0.2
    assert upscale_strength("creative", (32, 32), 64 * 64) == 0.45
    assert upscale_strength("creative", (64, 64), 64 * 64) == 0.3
    with pytest.raises(ValueError, match="unknown upscale kind 'huge'"):
        upscale_strength("huge", (64, 64), 64 * 64)


def test_step_callback_sees_every_step(tiny_sdxl: DiffusionPipeline) -> None:
    steps: list[int] = []

    def on_step(pipe: DiffusionPipeline, step: int, timestep: object, tensors: dict) -> dict:  # type: ignore[type-arg]
        steps.append(step)
        return tensors

    images, _ = render(tiny_sdxl, tiny_spec(), num_images=1, callback_on_step_end=on_step)
    assert steps == list(range(TINY_STEPS)) and len(images) == 1


def test_bad_inputs_are_refused_with_a_message(tiny_sd15: DiffusionPipeline) -> None:
    with pytest.raises(ValueError, match="no seed"):
        imagine(tiny_sd15, tiny_spec(seed=None))
    with pytest.raises(ValueError, match="not a multiple of the model's factor 2"):
        render(tiny_sd15, tiny_spec(width=33), num_images=1)
    with pytest.raises(ValueError, match="got 2 seeds for 1 images"):
        render(tiny_sd15, tiny_spec(), num_images=1, seeds=[1, 2])


def test_upscaler_model_without_spandrel_says_what_to_install(tmp_path: object) -> None:
    pytest.importorskip("pathlib")
    try:
        import spandrel  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("spandrel is installed here")
    from pathlib import Path

    from gpu_worker.ops.upscale import load_upscaler

    weights = Path(str(tmp_path)) / "4x.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="optional 'spandrel' package"):
        load_upscaler(weights)
