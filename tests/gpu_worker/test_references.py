"""``--sref`` / ``--cref`` on the worker: IP-Adapters (tiny, of the real layout) loaded for one
render and unloaded after it, their weights, and image prompts where a model has none."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelEntry
from core.models_file import load_catalog
from core.references import (
    AdapterEntry,
    character_scale,
    fallback_image_weight,
    image_prompt_scale,
    style_scale,
)
from core.spec import ControlRef
from gpu_worker.cache import PipelineCache
from gpu_worker.failures import JobRejected
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.references import write_tiny_ip_adapter
from gpu_worker.rendering import JobRenderer
from tests.gpu_worker.test_tasks_rendering import DictStore, _job

STYLE = "https://cdn.example/style.png"
HERO = "https://cdn.example/hero.png"


@pytest.fixture
def renderer(tmp_path: Path, tiny_sd15: DiffusionPipeline) -> JobRenderer:
    folder, name, encoder = write_tiny_ip_adapter(tiny_sd15, tmp_path / "ip")
    catalog = load_catalog(None, data_dir=tmp_path)
    adapter = AdapterEntry(folder, name, encoder)
    tiny = dataclasses.replace(catalog.get("tiny"), style_adapter=adapter, character_adapter=adapter)
    catalog = dataclasses.replace(catalog, entries=(tiny, *[e for e in catalog if e.name != "tiny"]))

    def loader(entry: ModelEntry) -> DiffusionPipeline:
        return tiny_sd15

    pictures = {
        STYLE: Image.new("RGB", (48, 48), (240, 200, 20)),
        HERO: Image.new("RGB", (48, 48), (20, 20, 20)),
    }
    return JobRenderer(
        catalog=catalog,
        pipelines=PipelineCache(catalog, loader=loader),
        store=DictStore(),
        fetch=lambda url: pictures[url],
    )


def _hashes(result: object) -> set[str]:
    return {image.sha256 for image in result.images}  # type: ignore[attr-defined]


def _recipe(renderer: JobRenderer, result: object) -> dict[str, str]:
    key = result.images[0].storage_key  # type: ignore[attr-defined]
    return parse_parameters(read_parameters(renderer.store.get(key)) or "").settings


@pytest.mark.slow
def test_references_condition_one_render_through_ip_adapters(renderer: JobRenderer) -> None:
    plain = renderer(_job())
    styled = renderer(_job(style_refs=(STYLE,)))
    stronger = renderer(_job(style_refs=(STYLE,), style_weight=800))
    both = renderer(_job(style_refs=(STYLE,), character_refs=(HERO,), character_weight=20))
    assert len(styled.images) == 4
    assert all(
        _hashes(a).isdisjoint(_hashes(b)) for a, b in ((plain, styled), (styled, stronger), (styled, both))
    )
    assert _recipe(renderer, styled)["Style reference"].startswith(
        "IP-Adapter ip-adapter_tiny.safetensors 0.60"
    )
    assert "Character reference" in _recipe(renderer, both)
    # The adapters were unloaded: the next plain job renders exactly as before.
    assert _hashes(renderer(_job())) == _hashes(plain)


@pytest.mark.slow
def test_a_style_adapter_reads_image_prompts_by_what_they_show(renderer: JobRenderer) -> None:
    semantic = renderer(_job(image_urls=(STYLE,)))
    heavier = renderer(_job(image_urls=(STYLE,), image_weight=2.5))
    said = _recipe(renderer, semantic)
    assert said["Image prompts"] == "IP-Adapter ip-adapter_tiny.safetensors 0.60" and "Denoising strength" not in said
    assert _hashes(semantic).isdisjoint(_hashes(heavier)) and _hashes(semantic).isdisjoint(_hashes(renderer(_job())))


@pytest.mark.slow
def test_without_an_adapter_references_are_image_prompts_and_say_so(renderer: JobRenderer) -> None:
    bare = dataclasses.replace(renderer.catalog.get("tiny"), style_adapter=None, character_adapter=None)
    renderer.catalog = dataclasses.replace(renderer.catalog, entries=(bare,), default_name="tiny")
    renderer.pipelines.catalog = renderer.catalog
    styled = renderer(_job(style_refs=(STYLE,)))
    said = _recipe(renderer, styled)
    assert (
        said["Style reference"] == "image prompt (the model has no style adapter)"
        and "Denoising strength" in said
    )
    assert _hashes(styled).isdisjoint(_hashes(renderer(_job(style_refs=(STYLE,), style_weight=900))))
    with pytest.raises(JobRejected, match="--cn"):
        renderer(_job(image_urls=(HERO,), style_refs=(STYLE,), controls=(ControlRef("canny"),)))


def test_weights_map_to_adapter_scales_and_image_weights() -> None:
    assert style_scale(100) == pytest.approx(0.6) and style_scale(400) == pytest.approx(1.2)
    assert style_scale(1000) == 1.5 and style_scale(0) == 0
    assert character_scale(100) == pytest.approx(0.9) and character_scale(0) == pytest.approx(0.3)
    assert fallback_image_weight(100, 1000) == pytest.approx(1.0) and fallback_image_weight(1000, 1000) == 2.0
    assert fallback_image_weight(0, 100) == 0.25 and fallback_image_weight(100, 100) == pytest.approx(1.0)
    assert image_prompt_scale(None) == pytest.approx(0.6) and image_prompt_scale(3.0) == 1.5
    assert np.isfinite(style_scale(250))
