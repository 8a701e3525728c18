"""/describe on the worker: the shipped model's own captioner, a transformers captioner (a
tiny BLIP of the real classes), and a describe job through the renderer."""

from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from core import prompt as grammar
from core.models_file import load_catalog
from core.spec import JobKind, JobSpec, Lane
from gpu_worker.captioning import CaptionerMissing, describe_image, load_captioner
from gpu_worker.captioning.shapes import ShapesCaptioner, describe_scene, exact_rate, scene_attributes
from gpu_worker.captioning.vision_text import VisionTextCaptioner, write_tiny_captioner
from gpu_worker.failures import JobRejected
from gpu_worker.records import ClaimedJob
from gpu_worker.registry import SHIPPED_MODELS_DIR
from gpu_worker.rendering import JobRenderer
from gpu_worker.training.captioner import held_out_set
from gpu_worker.training.dataset import draw_scene, eval_pairs
from tests.gpu_worker.test_tasks_rendering import DictStore

SHIPPED_CAPTIONER = SHIPPED_MODELS_DIR / "shapes" / "captioner"


def test_the_shipped_captioner_reads_held_out_scenes_exactly() -> None:
    captioner = ShapesCaptioner.load(SHIPPED_CAPTIONER)
    scenes, images = held_out_set(300, seed=77)
    exact, attributes = exact_rate(captioner, scenes, images)
    assert exact >= 0.9, (exact, attributes)
    # Its best description of a scene is that scene, in words the model was trained on.
    scene = eval_pairs(1, seed=5)[0].scene
    best = captioner.describe(draw_scene(scene), count=4)
    assert len(best) == 4 and len(set(best)) == 4
    assert best[0] == describe_scene(scene_attributes(scene))


def test_a_transformers_captioner_gives_four_distinct_prompts_the_same_for_the_same_seed(
    tmp_path: Path,
) -> None:
    captioner = VisionTextCaptioner.load(str(write_tiny_captioner(tmp_path / "blip")))
    picture = Image.new("RGB", (96, 64), (200, 30, 30))
    prompts = describe_image(captioner, picture, seed=11)
    assert len(prompts) == 4 and len({p.lower() for p in prompts}) == 4
    for made in prompts:
        assert made.endswith("--ar 3:2")
        assert grammar.parse(made).aspect_ratio == (3, 2)
    assert describe_image(captioner, picture, seed=11) == prompts
    assert describe_image(captioner, picture, seed=12)[1:] != prompts[1:]


def _describe_job(model: str, source_key: str) -> ClaimedJob:
    spec = JobSpec(parts=(), width=64, height=64, seed=None, model=model)
    return ClaimedJob(
        id=uuid.uuid4(),
        kind=JobKind.DESCRIBE,
        variant="image",
        spec=spec,
        model=model,
        lane=Lane.FAST,
        seed=1234,
        attempts=1,
        private=False,
        parent_id=uuid.uuid4(),
        parent_index=0,
        source_keys=(source_key,),
    )


def _stored_scene(store: DictStore, size: tuple[int, int]) -> tuple[str, str]:
    scene = eval_pairs(1, seed=9, width=size[0], height=size[1])[0].scene
    buffer = io.BytesIO()
    draw_scene(scene).save(buffer, format="PNG")
    return store.put(buffer.getvalue()), describe_scene(scene_attributes(scene))


@pytest.mark.slow
def test_a_describe_job_stores_prompts_and_no_images(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    store = DictStore()
    renderer = JobRenderer(catalog=catalog, pipelines=None, store=store)
    key, truth = _stored_scene(store, (80, 48))

    result = renderer(_describe_job("shapes", key))
    assert result.images == () and result.grid_storage_key is None
    assert result.prompts is not None and result.prompts[0] == f"{truth} --ar 5:3"
    assert store.files.keys() == {key}  # nothing new stored

    # The tiny model's captioner (a random BLIP, written on first use) runs through the same job.
    tiny = renderer(_describe_job("tiny", key))
    assert tiny.prompts is not None and len(tiny.prompts) == 4
    assert (tmp_path / "models" / "tiny" / "captioner" / "config.json").is_file()


def test_a_model_without_a_captioner_rejects_a_describe_job(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    bare = dataclasses.replace(catalog.get("tiny"), captioner=None)
    with pytest.raises(CaptionerMissing, match="no captioner"):
        load_captioner(bare)
    store = DictStore()
    key, _ = _stored_scene(store, (64, 64))
    no_captioner = dataclasses.replace(catalog, entries=(bare,), default_name="tiny")
    renderer = JobRenderer(catalog=no_captioner, pipelines=None, store=store)
    with pytest.raises(JobRejected, match="no captioner"):
        renderer(_describe_job("tiny", key))
