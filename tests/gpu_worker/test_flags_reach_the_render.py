"""Every flag the grammar accepts changes what the worker does (or is refused).

Two prompts that differ only in one flag are parsed as the bot parses them and rendered
through the worker's operations on the tiny SD 1.5 pipeline: the pixels (or the size) must
differ. Flags that decide the job rather than the render (which model, how many jobs,
which lane) must show up in the job the submit service creates; they are checked on the
parsed spec's job fields here and end to end in tests/bot/test_submit.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core import prompt as grammar
from core.models import ModelDefaults
from core.spec import JobSpec, Lane
from gpu_worker.ops.blend import image_prompt
from gpu_worker.ops.imagine import imagine

DEFAULTS = ModelDefaults(pixel_budget=32 * 32, size_step=16, steps=2, cfg=5.0, sampler=None)
BASE = "a red fox in the snow --seed 42"

RENDER_FLAGS: dict[str, str] = {
    "ar": "--ar 2:1",
    "seed": "--seed 7",
    "no": "--no snow",
    "chaos": "--chaos 80",
    "weird": "--weird 1000",
    "stylize": "--stylize 900",
    "steps": "--steps 3",
    "stop": "--stop 50",
    "cfg": "--cfg 12",
    "sampler": "--sampler Euler a",
    "tile": "--tile",
    "quality": "--quality 2",
    "clip-skip": "--clip-skip 2",
}
"""Flags that change the pixels of an imagine render."""

HOUSE_STYLE_FLAGS: dict[str, str] = {"style": "--style raw"}
"""Flags that change the render of a model with a house style (``style_prompt``,
``negative_prompt`` in models.toml); on a model without one the bot refuses them."""

IMAGE_PROMPT_FLAGS: dict[str, str] = {"iw": "--iw 2"}
"""Flags that change a render from image prompts."""

REFERENCE_FLAGS: dict[str, tuple[str, str]] = {
    "sref": ("", "--sref https://cdn.discordapp.com/attachments/1/2/style.png"),
    "sw": ("--sref https://cdn.discordapp.com/attachments/1/2/style.png", "--sw 600"),
    "cref": ("", "--cref https://cdn.discordapp.com/attachments/1/2/hero.png"),
    "cw": ("--cref https://cdn.discordapp.com/attachments/1/2/hero.png", "--cw 10"),
}
"""Flags that condition a render on reference pictures (through an IP-Adapter): each changes
the image against the same prompt without it (its companion, if any, in both)."""

CONTROL_FLAGS: dict[str, str] = {"cn": "--cn canny:0.7"}
"""Flags that guide a render with the prompt's picture through a ControlNet."""

JOB_FLAGS: dict[str, tuple[str, str]] = {
    "model": ("--model shapes", "model"),
    "v": ("--v 7", "model"),
    "niji": ("--niji 6", "model"),
    "lora": ("--lora film", "loras"),
    "repeat": ("--repeat 2", "repeat"),
    "fast": ("--fast", "lane"),
    "relax": ("--relax", "lane"),
}
"""Flags that decide the job (the model, its LoRAs, how many jobs, the lane), and the spec
field that carries them to the submit service and the worker's pipeline cache."""


def parse(text: str) -> JobSpec:
    return grammar.parse(text, pixel_budget=DEFAULTS.pixel_budget, size_step=DEFAULTS.size_step)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_every_flag_of_the_grammar_is_checked_here() -> None:
    covered = set(RENDER_FLAGS) | set(IMAGE_PROMPT_FLAGS) | set(JOB_FLAGS) | set(HOUSE_STYLE_FLAGS) | set(CONTROL_FLAGS)
    covered |= set(REFERENCE_FLAGS)
    assert covered == set(grammar.FLAG_NAMES)


@pytest.fixture(scope="module")
def base_image(tiny_sd15: DiffusionPipeline) -> Image.Image:
    images, _ = imagine(tiny_sd15, parse(BASE), defaults=DEFAULTS, num_images=1)
    return images[0]


@pytest.mark.parametrize("flag", list(RENDER_FLAGS))
def test_a_render_flag_changes_the_image(flag: str, tiny_sd15: DiffusionPipeline, base_image: Image.Image) -> None:
    text = BASE.replace("--seed 42", "") if flag == "seed" else BASE
    spec = parse(f"{text} {RENDER_FLAGS[flag]}")
    assert spec != parse(BASE)

    images, _ = imagine(tiny_sd15, spec, defaults=DEFAULTS, num_images=1)

    changed = images[0]
    assert changed.size != base_image.size or not np.array_equal(pixels(changed), pixels(base_image)), flag


def test_quality_scales_the_steps_the_render_runs(tiny_sd15: DiffusionPipeline) -> None:
    _, low = imagine(tiny_sd15, parse(f"{BASE} --steps 4 --q .5"), defaults=DEFAULTS, num_images=1)
    _, high = imagine(tiny_sd15, parse(f"{BASE} --steps 4 --q 2"), defaults=DEFAULTS, num_images=1)
    _, plain = imagine(tiny_sd15, parse(BASE), defaults=DEFAULTS, num_images=1)
    assert (low.steps, high.steps, plain.steps) == (2, 8, DEFAULTS.steps)


def test_image_weight_changes_a_render_from_an_image_prompt(tiny_sd15: DiffusionPipeline) -> None:
    source = Image.new("RGB", (32, 32), (200, 40, 40))
    url = "https://cdn.discordapp.com/attachments/1/2/fox.png"
    # img2img runs int(steps * strength) steps: at 2 steps every weight would run 1.
    base = parse(f"{url} {BASE} --steps 8")
    weighted = parse(f"{url} {BASE} --steps 8 {IMAGE_PROMPT_FLAGS['iw']}")
    plain, _ = image_prompt(tiny_sd15, base, [source], defaults=DEFAULTS, num_images=1)
    heavy, _ = image_prompt(tiny_sd15, weighted, [source], defaults=DEFAULTS, num_images=1)
    assert not np.array_equal(pixels(plain[0]), pixels(heavy[0]))


@pytest.mark.parametrize("flag", list(REFERENCE_FLAGS))
def test_a_reference_flag_changes_the_image(flag: str, tiny_sd15: DiffusionPipeline, tmp_path: object) -> None:
    import dataclasses
    from pathlib import Path

    from core.models_file import load_catalog
    from core.references import AdapterEntry
    from gpu_worker.references import References, write_tiny_ip_adapter

    folder, name, encoder = write_tiny_ip_adapter(tiny_sd15, Path(str(tmp_path)) / "ip")
    adapter = AdapterEntry(folder, name, encoder)
    entry = dataclasses.replace(
        load_catalog(None, data_dir=Path(str(tmp_path))).get("tiny"), style_adapter=adapter, character_adapter=adapter
    )
    companion, text = REFERENCE_FLAGS[flag]

    def render(spec: JobSpec) -> np.ndarray:
        picture = Image.new("RGB", (32, 32), (220, 180, 30))
        refs = References(entry, [picture] * len(spec.style_refs), [picture] * len(spec.character_refs))
        with refs.applied(tiny_sd15, spec) as extra:
            return pixels(imagine(tiny_sd15, spec, defaults=DEFAULTS, num_images=1, extra=extra)[0][0])

    base, flagged = parse(f"{BASE} {companion}"), parse(f"{BASE} {companion} {text}")
    assert base != flagged
    assert not np.array_equal(render(base), render(flagged))


@pytest.mark.parametrize("flag", list(CONTROL_FLAGS))
def test_a_control_flag_changes_the_image(flag: str, tiny_sd15: DiffusionPipeline, base_image: Image.Image) -> None:
    from gpu_worker.control import ControlCall, tiny_controlnet
    from gpu_worker.control.preprocess import canny

    url = "https://cdn.discordapp.com/attachments/1/2/circle.png"
    spec = parse(f"{url} {BASE} {CONTROL_FLAGS[flag]}")
    assert spec.controls and spec.image_urls == (url,)
    picture = Image.new("RGB", (spec.width, spec.height), (0, 0, 200))
    picture.paste((250, 250, 0), (8, 8, 24, 24))
    net = tiny_controlnet(tiny_sd15, seed=1)

    def render(weights: list[float]) -> Image.Image:
        call = ControlCall(net, [canny(picture)], weights)
        return imagine(tiny_sd15, spec, defaults=DEFAULTS, num_images=1, controls=call)[0][0]

    guided = render([c.weight for c in spec.controls])
    assert not np.array_equal(pixels(guided), pixels(base_image))
    assert not np.array_equal(pixels(guided), pixels(render([1.5])))  # the weight matters too


@pytest.mark.parametrize("flag", list(JOB_FLAGS))
def test_a_job_flag_reaches_the_job(flag: str) -> None:
    text, field = JOB_FLAGS[flag]
    spec, base = parse(f"{BASE} {text}"), parse(BASE)
    assert getattr(spec, field) != getattr(base, field)
    if flag in ("fast", "relax"):
        assert spec.lane is Lane(flag)


@pytest.mark.parametrize("flag", list(HOUSE_STYLE_FLAGS))
@pytest.mark.parametrize(
    "house", [{"style_prompt": "snowy, watercolor"}, {"negative_prompt": "blurry, dark"}], ids=["words", "negative"]
)
def test_a_house_style_flag_changes_the_image_of_a_model_with_one(
    flag: str, house: dict[str, str], tiny_sd15: DiffusionPipeline
) -> None:
    import dataclasses

    styled = dataclasses.replace(DEFAULTS, **house)
    plain, _ = imagine(tiny_sd15, parse(BASE), defaults=DEFAULTS, num_images=1)
    with_style, _ = imagine(tiny_sd15, parse(BASE), defaults=styled, num_images=1)
    raw, _ = imagine(tiny_sd15, parse(f"{BASE} {HOUSE_STYLE_FLAGS[flag]}"), defaults=styled, num_images=1)
    assert not np.array_equal(pixels(with_style[0]), pixels(plain[0]))  # the house style applies
    assert np.array_equal(pixels(raw[0]), pixels(plain[0]))  # and --style raw leaves it out
