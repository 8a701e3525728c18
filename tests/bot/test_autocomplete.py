"""Autocomplete suggestions for models, LoRAs and samplers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.autocomplete import MAX_CHOICES, fuzzy, lora_choices, model_choices, sampler_choices
from core.models import ModelCatalog, builtin_entries
from core.models_file import parse_catalog
from core.samplers import SAMPLER_NAMES


def catalog_of(folder: Path, models: dict[str, list[str]]) -> ModelCatalog:
    """Hub-sourced models (nothing is read or downloaded) with the named LoRAs each."""
    raw: dict[str, dict[str, object]] = {}
    for name, loras in models.items():
        entries = []
        for lora in loras:
            path = folder / f"{lora}.safetensors"
            path.write_bytes(b"")
            entries.append({"name": lora, "path": str(path)})
        raw[name] = {
            "family": "sdxl",
            "hub": f"example/{name}",
            "loras": entries,
            "description": f"{name} model",
        }
    return parse_catalog({"models": raw}, base_dir=folder, builtins=builtin_entries(folder))


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    return catalog_of(
        tmp_path,
        {
            "dreamshaper": ["pixel-art", "watercolor"],
            "juggernaut-xl": ["watercolor", "film-grain"],
            "sdxl-turbo": [],
        },
    )


def test_prefix_beats_word_start_beats_substring_beats_letters_in_order() -> None:
    names = ["anything", "turbo-xl", "sdxl-turbo", "oturbo", "t-x-u-r-b-o"]
    assert fuzzy(names, "turbo") == ["turbo-xl", "sdxl-turbo", "oturbo", "t-x-u-r-b-o"]


def test_samplers_match_loosely_and_keep_their_spelling() -> None:
    assert sampler_choices("dpm++ 2m k")[0].value == "DPM++ 2M Karras"
    assert sampler_choices("dpm2m")[0].value == "DPM++ 2M"
    assert [c.value for c in sampler_choices("EULER")][:2] == ["Euler", "Euler a"]
    assert sampler_choices("zzz") == []


def test_at_most_25_choices_are_offered() -> None:
    assert len(SAMPLER_NAMES) > MAX_CHOICES
    everything = sampler_choices("")
    assert [c.value for c in everything] == list(SAMPLER_NAMES[:MAX_CHOICES])


def test_models_are_those_the_server_allows(catalog: ModelCatalog) -> None:
    assert [c.value for c in model_choices(catalog, [], "")] == [
        "shapes",
        "tiny",
        "dreamshaper",
        "juggernaut-xl",
        "sdxl-turbo",
    ]
    assert [c.value for c in model_choices(catalog, ["dreamshaper", "sdxl-turbo"], "")] == [
        "dreamshaper",
        "sdxl-turbo",
    ]
    assert [c.value for c in model_choices(catalog, ["dreamshaper"], "jugg")] == []
    [juggernaut] = model_choices(catalog, [], "jxl")
    assert (juggernaut.name, juggernaut.value) == ("juggernaut-xl — juggernaut-xl model", "juggernaut-xl")


def test_loras_of_allowed_models_or_of_the_chosen_model(catalog: ModelCatalog) -> None:
    every = lora_choices(catalog, [], "")
    assert [(c.value, c.name) for c in every] == [
        ("pixel-art", "pixel-art — dreamshaper"),
        ("watercolor", "watercolor — dreamshaper, juggernaut-xl"),
        ("film-grain", "film-grain — juggernaut-xl"),
    ]
    assert [c.value for c in lora_choices(catalog, ["juggernaut-xl"], "")] == ["watercolor", "film-grain"]
    assert [c.value for c in lora_choices(catalog, [], "", model="Dreamshaper")] == [
        "pixel-art",
        "watercolor",
    ]
    assert [c.value for c in lora_choices(catalog, [], "grain")] == ["film-grain"]


def test_a_long_description_is_cut_to_discords_limit(tmp_path: Path) -> None:
    raw = {"models": {"wordy": {"family": "sd15", "hub": "example/wordy", "description": "x" * 300}}}
    catalog = parse_catalog(raw, base_dir=tmp_path, builtins=builtin_entries(tmp_path))
    [choice] = model_choices(catalog, ["wordy"], "")
    assert len(choice.name) == 100 and choice.name.endswith("…")
