"""Captioner settings in models.toml, and a captioner's texts as prompts of the grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import prompt as grammar
from core.captioners import (
    MAX_DESCRIPTION_CHARS,
    CaptionerConfigError,
    CaptionerKind,
    as_prompt,
    as_prompts,
    parse_captioner,
)
from core.models import ModelConfigError
from core.models_file import parse_catalog
from core.sizes import aspect_of


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "blip"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def test_a_captioner_is_a_folder_or_a_hub_id(tmp_path: Path) -> None:
    _folder(tmp_path)
    assert parse_captioner(None, tmp_path, "m") is None
    by_path = parse_captioner("blip", tmp_path, "m")
    assert by_path is not None and (by_path.kind, by_path.location) == (
        CaptionerKind.PATH,
        str(tmp_path / "blip"),
    )
    table = parse_captioner({"path": str(tmp_path / "blip"), "prompt": "<CAPTION>"}, tmp_path, "m")
    assert table is not None and table.prompt == "<CAPTION>"
    hub = parse_captioner({"hub": "Salesforce/blip-image-captioning-base", "revision": "main"}, tmp_path, "m")
    assert hub is not None and (hub.kind, hub.revision) == (CaptionerKind.HUB, "main")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (3, "must be a folder path or a table"),
        ({"path": "blip", "hub": "x/y"}, "exactly one of 'path' and 'hub'"),
        ({}, "must be a folder path or a table"),
        ({"hub": "x/y", "weights": "a"}, "unknown key 'weights'"),
        ({"path": "blip", "revision": "main"}, "'revision' applies to a 'hub' captioner only"),
        ({"hub": ""}, "must be a non-empty string"),
        ("missing", "has no config.json"),
        ({"hub": "x/y", "prompt": "p" * 201}, "longer than 200"),
    ],
)
def test_a_malformed_captioner_setting_is_refused_by_name(tmp_path: Path, raw: object, message: str) -> None:
    _folder(tmp_path)
    with pytest.raises(CaptionerConfigError, match="captioner") as refused:
        parse_captioner(raw, tmp_path, "model 'm'")
    assert message in str(refused.value)


def test_models_toml_reads_the_captioner_and_builtins_have_theirs(tmp_path: Path) -> None:
    _folder(tmp_path)
    (tmp_path / "model_index.json").write_text("{}")
    raw = {"models": {"mine": {"family": "sd15", "path": str(tmp_path), "captioner": "blip"}}}
    catalog = parse_catalog(raw, base_dir=tmp_path, builtins=[])
    assert catalog.get("mine").captioner is not None
    raw["models"]["mine"]["captioner"] = {"path": "nowhere"}
    with pytest.raises(ModelConfigError, match="model 'mine'"):
        parse_catalog(raw, base_dir=tmp_path, builtins=[])

    from core.models import builtin_entries

    shipped = {e.name: e for e in builtin_entries(tmp_path)}
    assert (
        shipped["shapes"].captioner is not None and shipped["shapes"].captioner.kind is CaptionerKind.BUILTIN
    )
    assert shipped["tiny"].captioner is not None


def test_a_caption_becomes_a_prompt_that_says_nothing_but_words() -> None:
    hostile = (
        "a cat --no dog :: 2 {red, blue} <lora:x:1> https://evil.example/x.png @everyone **bold** —repeat 40"
    )
    made = as_prompt(hostile, 1536, 1024)
    assert made is not None and made.endswith(" --ar 3:2")
    words = made.removesuffix(" --ar 3:2")
    for forbidden in ("--", "—", "::", "{", "}", "<lora", "http", "@", "**"):
        assert forbidden not in words
    spec = grammar.parse(made)
    assert (
        spec.aspect_ratio == (3, 2) and not spec.image_urls and spec.repeat == 1 and not spec.negative_prompt
    )
    assert as_prompt("a red circle", 64, 64) == "a red circle"  # square: no --ar
    assert as_prompt("-- :: {} ..", 64, 64) is None
    long = as_prompt("word " * 200, 64, 64)
    assert long is not None and len(long) <= MAX_DESCRIPTION_CHARS and not long.endswith(" ")


def test_prompts_are_distinct_and_at_most_four() -> None:
    texts = ["a fox", "A fox.", "a fox in snow", "", "a hut", "a boat", "a car"]
    assert as_prompts(texts, 80, 48) == [
        "a fox --ar 5:3",
        "a fox in snow --ar 5:3",
        "a hut --ar 5:3",
        "a boat --ar 5:3",
    ]


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1536, 1024), (3, 2)),
        ((1024, 683), (3, 2)),
        ((1920, 1080), (16, 9)),
        ((64, 64), (1, 1)),
        ((48, 80), (3, 5)),
        ((100, 1000), (1, 4)),
        ((5000, 10), (4, 1)),
    ],
)
def test_aspect_of_a_picture_is_the_plain_ratio_nearest_to_it(
    size: tuple[int, int], ratio: tuple[int, int]
) -> None:
    assert aspect_of(*size) == ratio
