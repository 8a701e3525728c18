"""``--cn`` on the worker: control maps, ControlNets (two at once) on tiny SD 1.5 and SDXL
pipelines of the real classes, depth from a tiny depth estimator, and refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelEntry
from core.models_file import load_catalog
from core.spec import ControlRef, JobKind
from gpu_worker.cache import PipelineCache
from gpu_worker.control import ControlCall, ControlKit, tiny_controlnet
from gpu_worker.control.estimators import PoseEstimator, write_tiny_depth_estimator, write_tiny_pose_estimator
from gpu_worker.control.preprocess import canny, lineart, scribble, tile
from gpu_worker.failures import JobRejected
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.ops.imagine import imagine
from gpu_worker.rendering import JobRenderer
from gpu_worker.training.dataset import draw_scene, eval_pairs
from tests.gpu_worker.conftest import tiny_spec
from tests.gpu_worker.test_tasks_rendering import DictStore, _job

URL = "https://cdn.example/shape.png"


def _picture() -> Image.Image:
    return draw_scene(eval_pairs(1, seed=3)[0].scene)


def test_control_maps_outline_the_shape_where_it_is() -> None:
    scene = eval_pairs(1, seed=3)[0].scene
    picture = draw_scene(scene)
    edges = np.asarray(canny(picture).convert("L")) > 0
    ys, xs = np.nonzero(edges)
    assert edges.any() and abs(xs.mean() - scene.cx) < 3 and abs(ys.mean() - scene.cy) < 3
    thick = np.asarray(scribble(picture).convert("L")) > 0
    assert thick.sum() > edges.sum() and (thick | edges).sum() == thick.sum()
    assert (np.asarray(lineart(picture).convert("L")) > 0).any()
    assert tile(picture).size == picture.size


@pytest.fixture
def renderer(tmp_path: Path, tiny_sd15: DiffusionPipeline) -> JobRenderer:
    catalog = load_catalog(None, data_dir=tmp_path)

    def loader(entry: ModelEntry) -> DiffusionPipeline:
        return tiny_sd15

    return JobRenderer(
        catalog=catalog,
        pipelines=PipelineCache(catalog, loader=loader),
        store=DictStore(),
        fetch=lambda url: _picture(),
    )


def _hashes(result: object) -> list[str]:
    return [image.sha256 for image in result.images]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_two_controls_at_once_guide_the_render(renderer: JobRenderer) -> None:
    plain = renderer(_job(image_urls=()))
    one = renderer(_job(image_urls=(URL,), controls=(ControlRef("canny"),)))
    two = renderer(_job(image_urls=(URL,), controls=(ControlRef("canny"), ControlRef("scribble", 0.5))))
    again = renderer(_job(image_urls=(URL,), controls=(ControlRef("canny"), ControlRef("scribble", 0.5))))
    weaker = renderer(_job(image_urls=(URL,), controls=(ControlRef("canny", 0.2),)))
    assert len(two.images) == 4 and two.grid_storage_key is not None
    assert _hashes(two) == _hashes(again)  # reproducible
    for other in (plain, one, weaker):
        assert set(_hashes(two)).isdisjoint(_hashes(other)) or other is two
    assert set(_hashes(one)).isdisjoint(_hashes(plain)) and set(_hashes(one)).isdisjoint(_hashes(weaker))
    params = parse_parameters(read_parameters(renderer.store.get(two.images[0].storage_key)) or "")
    assert params.settings["ControlNet"] == "canny 1, scribble 0.5"


@pytest.mark.slow
def test_depth_and_pose_need_their_estimators(renderer: JobRenderer, tmp_path: Path) -> None:
    tiny = renderer.catalog.get("tiny")
    depth_net = dataclasses.replace(tiny.controlnets[0], kind="depth")
    pose_net = dataclasses.replace(tiny.controlnets[0], kind="pose")
    without = dataclasses.replace(tiny, controlnets=(*tiny.controlnets, depth_net, pose_net))
    renderer.catalog = dataclasses.replace(renderer.catalog, entries=(without,), default_name="tiny")
    renderer.pipelines.catalog = renderer.catalog
    with pytest.raises(JobRejected, match="no depth estimator"):
        renderer(_job(image_urls=(URL,), controls=(ControlRef("depth"),)))
    with pytest.raises(JobRejected, match="no pose estimator"):
        renderer(_job(image_urls=(URL,), controls=(ControlRef("pose"),)))
    assert len(renderer(_job(image_urls=(URL,), controls=(ControlRef("pose", as_is=True),))).images) == 4

    estimated = dataclasses.replace(
        without,
        depth_estimator=write_tiny_depth_estimator(tmp_path / "depth"),
        pose_estimator=write_tiny_pose_estimator(tmp_path / "pose"),
    )
    renderer.catalog = dataclasses.replace(renderer.catalog, entries=(estimated,), default_name="tiny")
    renderer.pipelines.catalog = renderer.catalog
    assert len(renderer(_job(image_urls=(URL,), controls=(ControlRef("depth"),))).images) == 4
    assert len(renderer(_job(image_urls=(URL,), controls=(ControlRef("pose"),))).images) == 4


def test_a_control_the_model_lacks_rejects_the_job(renderer: JobRenderer) -> None:
    with pytest.raises(JobRejected, match="no 'tile' ControlNet"):
        renderer(_job(image_urls=(URL,), controls=(ControlRef("tile"),)))
    with pytest.raises(JobRejected):
        renderer(
            _job(
                JobKind.IMAGINE,
                image_urls=(URL, URL, URL),
                controls=(ControlRef("canny"), ControlRef("canny")),
            )
        )


def test_sdxl_renders_with_two_controlnets(tiny_sdxl: DiffusionPipeline) -> None:
    nets = [tiny_controlnet(tiny_sdxl, seed=s) for s in (1, 2)]
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    maps = [canny(_picture()).resize((64, 64)), scribble(_picture()).resize((64, 64))]
    spec = tiny_spec(seed=7)
    plain, _ = imagine(tiny_sdxl, spec)
    guided, _ = imagine(tiny_sdxl, spec, controls=ControlCall(MultiControlNetModel(nets), maps, [1.0, 0.7]))
    assert len(guided) == 4 and guided[0].size == plain[0].size
    assert np.asarray(guided[0]).tobytes() != np.asarray(plain[0]).tobytes()
    assert ControlKit is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flux", "sd3", "qwen-image", "z-image"])
def test_transformer_families_render_with_controlnets(name: str, tmp_path: Path) -> None:
    """Two at once where the family's pipelines take several (Qwen-Image's and Z-Image's take one)."""
    import importlib

    from core.families import family
    from gpu_worker.families import adapter
    from gpu_worker.tiny_model import build_tiny_pipeline

    pipe = build_tiny_pipeline(name)
    if name == "sd3":
        # The tiny SD3 transformer has one block, its last, which takes no ControlNet residual
        # (diffusers adds them to the blocks before the last): two blocks here.
        config = {**pipe.transformer.config, "num_layers": 2}
        pipe.register_modules(transformer=type(pipe.transformer).from_config(config))
    worker = adapter(name)
    maps = [canny(_picture()).resize((32, 32)), scribble(_picture()).resize((32, 32))]
    spec = tiny_spec(seed=7, width=32, height=32, steps=2)
    plain, _ = imagine(pipe, spec)
    # One control through the worker's own path: a ControlNet folder loaded by ControlKit.
    from core.controls import ControlNetEntry
    from gpu_worker.control import write_tiny_controlnet

    folder = write_tiny_controlnet(pipe, tmp_path / "cn", seed=1)
    entry = dataclasses.replace(
        load_catalog(None, data_dir=tmp_path).get("tiny"),
        controlnets=(ControlNetEntry("canny", str(folder)),),
    )
    call = ControlKit().call(entry, pipe, (ControlRef("canny"),), [_picture()], (32, 32))
    one, _ = imagine(pipe, spec, controls=call)
    assert len(one) == 4 and one[0].size == plain[0].size
    assert np.asarray(one[0]).tobytes() != np.asarray(plain[0]).tobytes()
    if family(name).max_controls < 2:
        return
    module, cls = worker.multi_controlnet_class.rsplit(".", 1)
    multi = getattr(importlib.import_module(module), cls)([tiny_controlnet(pipe, seed=s) for s in (1, 2)])
    two, _ = imagine(pipe, spec, controls=ControlCall(multi, maps, [1.0, 0.7]))
    assert np.asarray(two[0]).tobytes() not in (np.asarray(plain[0]).tobytes(), np.asarray(one[0]).tobytes())


def test_a_pose_map_is_a_skeleton_on_black(tmp_path: Path) -> None:
    estimator = PoseEstimator.load(write_tiny_pose_estimator(tmp_path / "pose"))
    skeleton = estimator(Image.new("RGB", (96, 144), (120, 110, 100)))
    assert skeleton.size == (96, 144) and skeleton.mode == "RGB"
    assert np.asarray(skeleton)[0, 0].tolist() == [0, 0, 0]
