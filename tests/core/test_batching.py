"""Which jobs may share a pipeline call (core.batching.batch_key)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.batching import batch_key
from core.spec import ControlRef, JobKind, JobSpec, LoraRef, PromptPart

BASE = JobSpec(parts=(PromptPart("a red fox"),), width=512, height=512, seed=1)


def _key(spec: JobSpec, kind: JobKind = JobKind.IMAGINE, variant: str | None = None) -> str | None:
    return batch_key(kind, variant, spec)


@pytest.mark.parametrize(
    "other",
    [
        replace(BASE, parts=(PromptPart("a blue whale"), PromptPart("ocean", 0.5))),
        replace(BASE, seed=99),
        replace(BASE, negative_prompt="blurry"),
        replace(BASE, chaos=40),
        replace(BASE, weird=250),
        replace(BASE, raw=True),
    ],
    ids=["prompt", "seed", "negative", "chaos", "weird", "raw"],
)
def test_what_is_one_value_per_image_does_not_change_the_key(other: JobSpec) -> None:
    assert _key(other) == _key(BASE) is not None


@pytest.mark.parametrize(
    "other",
    [
        replace(BASE, width=768),
        replace(BASE, steps=30),
        replace(BASE, quality=2.0),
        replace(BASE, cfg=4.0),
        replace(BASE, stylize=500),
        replace(BASE, sampler="Euler a"),
        replace(BASE, clip_skip=2),
        replace(BASE, loras=(LoraRef("pixel", 0.8),)),
        replace(BASE, tile=True),
        replace(BASE, stop=60),
    ],
    ids=["size", "steps", "quality", "cfg", "stylize", "sampler", "clip-skip", "lora", "tile", "stop"],
)
def test_what_is_one_value_per_call_changes_the_key(other: JobSpec) -> None:
    assert _key(other) is not None
    assert _key(other) != _key(BASE)


def test_lora_weights_and_trained_loras_tell_keys_apart() -> None:
    light = replace(BASE, loras=(LoraRef("pixel", 0.5),))
    strong = replace(BASE, loras=(LoraRef("pixel", 1.0),))
    trained = replace(BASE, loras=(LoraRef("pixel", 0.5, storage_key="k", sha256="ab" * 32),))
    assert len({_key(light), _key(strong), _key(trained)}) == 3
    two = replace(BASE, loras=(LoraRef("a"), LoraRef("b")))
    assert _key(two) == _key(replace(BASE, loras=(LoraRef("b"), LoraRef("a"))))


@pytest.mark.parametrize(
    "alone",
    [
        replace(BASE, image_urls=("https://example.com/a.png",)),
        replace(BASE, style_refs=("https://example.com/s.png",)),
        replace(BASE, character_refs=("https://example.com/c.png",)),
        replace(BASE, controls=(ControlRef("canny"),), image_urls=("https://example.com/a.png",)),
        replace(BASE, mask_id=3),
    ],
    ids=["image-prompt", "sref", "cref", "controlnet", "mask"],
)
def test_jobs_that_start_from_pictures_render_alone(alone: JobSpec) -> None:
    assert _key(alone) is None


@pytest.mark.parametrize(
    ("kind", "variant"),
    [(JobKind.VARIATION, "subtle"), (JobKind.UPSCALE, "subtle"), (JobKind.ZOOM, "2"), (JobKind.IMAGINE, "control"),
     (JobKind.DESCRIBE, None), (JobKind.TRAIN, None)],
)
def test_other_recipes_render_alone(kind: JobKind, variant: str | None) -> None:
    assert _key(BASE, kind, variant) is None


def test_a_legacy_reroll_shares_the_imagine_key() -> None:
    assert _key(BASE, JobKind.REROLL) == _key(BASE)
