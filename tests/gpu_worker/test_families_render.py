"""Every family with a tiny pipeline renders each operation it supports through the worker's
renderer: text to image, image to image (a variation), inpainting (a zoom out) and a LoRA job."""

from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from core.families import ModelDefaults, Task, family
from core.kinds import recipe
from core.models import LoraEntry, ModelCatalog, ModelEntry, ModelSource, SourceKind
from core.spec import JobKind, JobSpec, Lane, LoraRef, PromptPart
from gpu_worker.cache import PipelineCache
from gpu_worker.failures import JobRejected
from gpu_worker.records import ClaimedJob
from gpu_worker.rendering import JobRenderer
from gpu_worker.tiny_model import TINY_FAMILIES, build_tiny_pipeline
from tests.gpu_worker.conftest import write_tiny_lora
from tests.gpu_worker.test_tasks_rendering import DictStore

SIZE = 32
JOBS = [(JobKind.IMAGINE, None), (JobKind.VARIATION, "strong"), (JobKind.ZOOM, "2"), (JobKind.EDIT, "image")]


def _renderer(name: str, tmp_path: Path) -> JobRenderer:
    lora = write_tiny_lora(tmp_path / "loras" / f"{name}.safetensors", name)
    entry = ModelEntry(
        name=f"tiny-{name}",
        family=family(name).key,
        source=ModelSource(SourceKind.BUILTIN, str(tmp_path / name)),
        defaults=ModelDefaults(pixel_budget=SIZE * SIZE, size_step=16, steps=2, cfg=3.0, sampler=None),
        loras=(LoraEntry("film", lora),),
    )
    catalog = ModelCatalog((entry,), entry.name)
    pipe = build_tiny_pipeline(name)
    return JobRenderer(catalog=catalog, pipelines=PipelineCache(catalog, loader=lambda _e: pipe), store=DictStore())


def _job(
    model: str, kind: JobKind, variant: str | None, sources: tuple[str, ...], loras: tuple[LoraRef, ...] = ()
) -> ClaimedJob:
    return ClaimedJob(
        id=uuid.uuid4(),
        kind=kind,
        variant=variant,
        spec=JobSpec(parts=(PromptPart("a red circle"),), width=SIZE, height=SIZE, steps=2, loras=loras),
        model=model,
        lane=Lane.FAST,
        seed=7,
        attempts=1,
        private=True,
        parent_id=None,
        parent_index=None,
        source_keys=sources,
    )


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_every_operation_a_family_supports_renders(name: str, tmp_path: Path) -> None:
    renderer = _renderer(name, tmp_path)
    model = renderer.catalog.default.name
    first = renderer(_job(model, JobKind.IMAGINE, None, ()))
    source = (first.images[0].storage_key,)
    done = {}
    for kind, variant in JOBS:
        if not family(name).supports(recipe(kind, variant).task):
            continue
        result = renderer(_job(model, kind, variant, () if kind is JobKind.IMAGINE else source))
        assert len(result.images) == 4 and result.grid_storage_key is not None
        image = Image.open(io.BytesIO(renderer.store.get(result.images[0].storage_key)))
        done[recipe(kind, variant).task] = image.size
    assert set(done) == set(Task) & set(family(name).tasks)
    assert done[Task.TEXT2IMG] == (SIZE, SIZE)

    # A LoRA job: the same recipe and seed, with the family's LoRA switched on, draws otherwise.
    def pixels(result: object) -> bytes:
        key = result.images[0].storage_key  # type: ignore[attr-defined]
        return Image.open(io.BytesIO(renderer.store.get(key))).tobytes()

    styled = renderer(_job(model, JobKind.IMAGINE, None, (), loras=(LoraRef("film", 1.0),)))
    assert pixels(styled) != pixels(first)  # the pixels, not the PNG (whose text names the LoRA)
    again = renderer(_job(model, JobKind.IMAGINE, None, ()))
    assert again.images[0].sha256 == first.images[0].sha256  # switched off again afterwards


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_weighted_multi_prompts_blend_or_are_refused_on_every_family(name: str, tmp_path: Path) -> None:
    renderer = _renderer(name, tmp_path)
    model = renderer.catalog.default.name

    def render(*parts: tuple[str, float]) -> str:
        job = _job(model, JobKind.IMAGINE, None, ())
        spec = dataclasses.replace(job.spec, parts=tuple(PromptPart(t, w) for t, w in parts))
        return renderer(dataclasses.replace(job, spec=spec)).images[0].sha256

    red, blue = render(("a red circle", 1.0)), render(("a blue square", 1.0))
    if not family(name).weights:
        # Its encoder cannot blend: weights are refused; equal parts are read as one prompt.
        with pytest.raises(JobRejected, match="cannot blend weighted prompt parts"):
            render(("a red circle", 2.0), ("a blue square", 1.0))
        assert len({red, blue, render(("a red circle", 1.0), ("a blue square", 1.0))}) == 3
        return
    mostly_red = render(("a red circle", 2.0), ("a blue square", 1.0))
    mostly_blue = render(("a red circle", 1.0), ("a blue square", 2.0))
    assert len({red, blue, mostly_red, mostly_blue}) == 4
    assert render(("a red circle", 2.0), ("a blue square", 1.0)) == mostly_red


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_a_negative_prompt_changes_the_render_on_every_family(name: str, tmp_path: Path) -> None:
    renderer = _renderer(name, tmp_path)
    model = renderer.catalog.default.name
    job = _job(model, JobKind.IMAGINE, None, ())

    def pixels(negative: str) -> bytes:
        result = renderer(dataclasses.replace(job, spec=dataclasses.replace(job.spec, negative_prompt=negative)))
        return Image.open(io.BytesIO(renderer.store.get(result.images[0].storage_key))).tobytes()

    if not family(name).negative_prompt:
        # Guidance distilled into the model: nothing takes a negative prompt, so it is refused.
        with pytest.raises(JobRejected, match="takes no negative prompt"):
            pixels("blurry")
        return
    assert pixels("") != pixels("blurry") != pixels("watermark")
