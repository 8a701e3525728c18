"""LoRA training on the worker: the engine on tiny SD 1.5 and SDXL pipelines (a LoRA that
diffusers loads, resumed runs ending with the same weights, a stop between steps), and a
training job through the renderer whose LoRA a later job renders with, fetched from the store."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

from core.models_file import load_catalog
from core.spec import JobKind, JobSpec, Lane, LoraRef, PromptPart
from core.training import TrainingKind, TrainingRequest
from gpu_worker.cache import PipelineCache
from gpu_worker.lora_training import Example, LoraTrainer, LoraTrainingConfig, bucket_size
from gpu_worker.records import ClaimedJob
from gpu_worker.rendering import JobRenderer
from gpu_worker.stopping import JobStopped
from tests.gpu_worker.test_tasks_rendering import DictStore

pytestmark = pytest.mark.slow


def _pictures(count: int = 5) -> list[Image.Image]:
    made = []
    for n in range(count):
        image = Image.new("RGB", (64 + 16 * (n % 2), 64), (30 * n, 200, 40))
        image.paste((250, 250, 0), (20, 20, 44, 44))
        made.append(image)
    return made


def _examples() -> list[Example]:
    return [Example(image, f"zorbl, a picture {n}") for n, image in enumerate(_pictures())]


def _trainer(pipe: DiffusionPipeline) -> LoraTrainer:
    return LoraTrainer(pipe, pixel_budget=32 * 32, size_step=8, steps=2, guidance=3.0)


def test_buckets_keep_the_aspect_at_the_budget() -> None:
    assert bucket_size(512, 512, pixel_budget=512 * 512, step=64) == (512, 512)
    assert bucket_size(1920, 1080, pixel_budget=512 * 512, step=64) == (704, 384)
    assert bucket_size(600, 800, pixel_budget=512 * 512, step=64) == (448, 576)


def test_a_trained_lora_loads_into_the_pipeline_and_changes_its_pictures(tiny_pipe: DiffusionPipeline,
                                                                           tmp_path: Path) -> None:
    trainer = _trainer(tiny_pipe)
    config = LoraTrainingConfig(steps=6, batch_size=2, checkpoint_every=3, preview_every=3, learning_rate=5e-2,
                                text_encoder_learning_rate=5e-2)
    events = []
    trained = trainer.train(_examples(), config, work_dir=tmp_path / "run", progress=events.append)
    assert trained.steps == 6 and len(trained.losses) == 6 and all(np.isfinite(trained.losses))
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6] and events[2].preview is not None
    weights = load_file(str(trained.path))
    assert any(k.startswith("unet.") for k in weights) and any(k.startswith("text_encoder") for k in weights)
    before = np.asarray(_render(tiny_pipe))
    tiny_pipe.load_lora_weights(str(trained.path), adapter_name="t")
    try:
        tiny_pipe.set_adapters(["t"], adapter_weights=[1.0])
        assert np.abs(np.asarray(_render(tiny_pipe)).astype(int) - before).mean() > 1
        tiny_pipe.set_adapters(["t"], adapter_weights=[0.0])  # weight 0: the base model exactly
        assert np.array_equal(np.asarray(_render(tiny_pipe)), before)
    finally:
        # Unloaded, not only deleted: the session's pipeline is shared, and a deleted adapter
        # leaves peft's wrapper layers behind (ControlNets built from its UNet then miss keys).
        tiny_pipe.unload_lora_weights()
    assert not any("base_layer" in name for name, _ in tiny_pipe.unet.named_parameters())
    assert np.array_equal(np.asarray(_render(tiny_pipe)), before)  # the cached model never changed


def _render(pipe: DiffusionPipeline) -> Image.Image:
    generator = torch.Generator("cpu").manual_seed(3)
    return pipe(prompt="zorbl, a picture", width=32, height=32, num_inference_steps=2, generator=generator).images[0]


def test_a_stopped_run_resumes_to_the_same_weights(tiny_sd15: DiffusionPipeline, tmp_path: Path) -> None:
    config = LoraTrainingConfig(steps=6, batch_size=2, checkpoint_every=2, preview_every=0)
    whole = _trainer(tiny_sd15).train(_examples(), config, work_dir=tmp_path / "whole")
    calls = []

    def stop_at_five() -> bool:
        calls.append(1)
        return len(calls) == 5  # asked before step 5: steps 1-4 ran, checkpoint at 4

    with pytest.raises(JobStopped) as stopped:
        _trainer(tiny_sd15).train(_examples(), config, work_dir=tmp_path / "cut", should_stop=stop_at_five)
    assert stopped.value.rendered == pytest.approx(4 / 6)
    resumed = _trainer(tiny_sd15).train(_examples(), config, work_dir=tmp_path / "cut")
    assert resumed.resumed_from == 4 and resumed.losses[:4] == whole.losses[:4]
    first, second = load_file(str(whole.path)), load_file(str(resumed.path))
    assert first.keys() == second.keys()
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)
    # Other pictures or settings never resume this checkpoint.
    other = LoraTrainingConfig(steps=6, batch_size=2, checkpoint_every=2, preview_every=0, seed=1)
    assert _trainer(tiny_sd15).train(_examples(), other, work_dir=tmp_path / "cut").resumed_from == 0


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_training_job_stores_its_lora_and_samples_and_a_later_job_renders_with_it(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    store = DictStore()
    renderer = JobRenderer(catalog=catalog, pipelines=PipelineCache(catalog), store=store,
                           training_root=tmp_path / "training")
    pictures = tuple(_png(image) for image in _pictures())
    request = TrainingRequest(TrainingKind.SUBJECT, "zorbl", ("a toy",) * len(pictures), steps=4)
    spec = JobSpec(parts=(PromptPart("a photo of zorbl"),), width=64, height=64, seed=5, model="tiny")
    job = ClaimedJob(id=uuid.uuid4(), kind=JobKind.TRAIN, variant=None, spec=spec, model="tiny", lane=Lane.FAST,
                     seed=5, attempts=1, private=True, parent_id=None, parent_index=None,
                     training=request.to_dict(), training_pictures=pictures)
    result = renderer(job)
    assert len(result.images) == 4 and result.grid_storage_key is not None and result.lora is not None
    lora = result.lora
    assert lora.storage_key == lora.sha256 and len(store.files[lora.storage_key]) == lora.size_bytes
    assert (tmp_path / "training" / str(job.id) / "checkpoint.pt").is_file()  # kept for a retried attempt

    def imagine(loras: tuple[LoraRef, ...]) -> bytes:
        spec = JobSpec(parts=(PromptPart("zorbl on a beach"),), width=64, height=64, seed=9, steps=2, model="tiny",
                       loras=loras)
        made = renderer(ClaimedJob(id=uuid.uuid4(), kind=JobKind.IMAGINE, variant=None, spec=spec, model="tiny",
                                   lane=Lane.FAST, seed=9, attempts=1, private=False, parent_id=None,
                                   parent_index=None))
        return store.files[made.images[0].storage_key]

    plain = imagine(())
    with_lora = imagine((LoraRef("zorbl-toy", 1.0, lora.storage_key, lora.sha256),))
    assert with_lora != plain
    assert imagine(()) == plain  # switched off again for the next job
    from gpu_worker.failures import JobRejected

    with pytest.raises(JobRejected, match="checksum"):
        imagine((LoraRef("bad", 1.0, lora.storage_key, "0" * 64),))


def test_explicit_training_pictures_are_refused_where_the_server_forbids_them(tmp_path: Path) -> None:
    from gpu_worker.failures import JobRejected

    catalog = load_catalog(None, data_dir=tmp_path)
    renderer = JobRenderer(catalog=catalog, pipelines=PipelineCache(catalog), store=DictStore(),
                           classify=lambda images: [0.9 if n == 2 else 0.0 for n in range(len(images))],
                           training_root=tmp_path / "training")
    pictures = tuple(_png(image) for image in _pictures())
    spec = JobSpec(parts=(PromptPart("a photo of zorbl"),), width=64, height=64, seed=5, model="tiny")
    for kind, allowed, caption, reason in (
        (TrainingKind.SUBJECT, False, "", "does not allow NSFW"),
        (TrainingKind.FACE, True, "", "never trained on explicit"),
        (TrainingKind.STYLE, True, "a 12 year old girl", "refer to a minor"),
    ):
        request = TrainingRequest(kind, "zorbl", (caption,) * len(pictures), steps=4, nsfw_allowed=allowed)
        job = ClaimedJob(id=uuid.uuid4(), kind=JobKind.TRAIN, variant=None, spec=spec, model="tiny",
                         lane=Lane.FAST, seed=5, attempts=1, private=True, parent_id=None, parent_index=None,
                         training=request.to_dict(), training_pictures=pictures)
        with pytest.raises(JobRejected, match=f"picture 3 is explicit.*{reason}"):
            renderer(job)


def test_pictures_without_a_caption_are_captioned_by_the_models_captioner() -> None:
    from gpu_worker.ops.train_lora import auto_captions

    class Captioner:
        def describe(self, image: Image.Image, *, count: int = 4, seed: int = 0) -> list[str]:
            return [f"a {image.width}px picture"]

    request = TrainingRequest(TrainingKind.SUBJECT, "zorbl", ("given", ""), steps=4)
    pictures = [Image.new("RGB", (64, 64)), Image.new("RGB", (80, 64))]
    assert auto_captions(request, pictures, Captioner()) == ("given", "a 80px picture")
    assert auto_captions(request, pictures, None) == ("given", "")
    captioned = TrainingRequest(TrainingKind.SUBJECT, "zorbl", ("a 80px picture", ""), steps=4)
    assert captioned.training_captions() == ["zorbl, a 80px picture", "a photo of zorbl"]
