"""The pipeline cache: LRU within a memory budget, shared weights, per-job LoRAs and schedulers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from core.models import LoraEntry, ModelCatalog, ModelEntry, ModelFamily, ModelSource, SourceKind
from core.models_file import load_catalog
from core.spec import LoraRef
from gpu_worker.cache import LoadState, PipelineCache
from gpu_worker.ops.common import render
from gpu_worker.registry import ModelLoadError, module_bytes
from gpu_worker.tiny_model import build_tiny_pipeline
from tests.gpu_worker.conftest import tiny_spec


def _catalog(*names: str, loras: tuple[LoraEntry, ...] = ()) -> ModelCatalog:
    defaults = load_catalog(None, data_dir="/nonexistent").get("tiny").defaults
    entries = tuple(
        ModelEntry(
            n, ModelFamily.SD15, ModelSource(SourceKind.BUILTIN, f"/nonexistent/{n}"), defaults, loras=loras
        )
        for n in names
    )
    return ModelCatalog(entries, names[0])


class CountingLoader:
    """Builds a tiny pipeline per model (seeded by name) and counts the loads."""

    def __init__(self) -> None:
        self.loads: list[str] = []

    def __call__(self, entry: ModelEntry) -> DiffusionPipeline:
        self.loads.append(entry.name)
        return build_tiny_pipeline("sd15", seed=len(entry.name))


def _one_image(pipe: DiffusionPipeline) -> np.ndarray:
    images, _ = render(pipe, tiny_spec(), num_images=1)
    return np.asarray(images[0], dtype=np.int16)


def test_img2img_and_inpaint_share_the_loaded_modules() -> None:
    loader = CountingLoader()
    cache = PipelineCache(_catalog("a"), memory_budget_bytes=1 << 40, loader=loader)
    assert cache.state("a") is LoadState.NOT_LOADED
    text = cache.get("a")
    img = cache.get("a", "img2img")
    inpaint = cache.get(None, "inpaint")
    assert "Img2Img" in type(img).__name__ and "Inpaint" in type(inpaint).__name__
    assert img.unet is text.unet and inpaint.unet is text.unet
    assert img.vae is text.vae and img.text_encoder is text.text_encoder
    assert cache.get("a", "img2img") is img  # derived once, then reused
    assert loader.loads == ["a"]
    assert cache.state("a") is LoadState.LOADED
    assert cache.used_bytes() == module_bytes(text)


def test_least_recently_used_model_is_evicted_when_over_budget() -> None:
    one = module_bytes(build_tiny_pipeline("sd15"))
    loader = CountingLoader()
    cache = PipelineCache(_catalog("a", "bb", "ccc"), memory_budget_bytes=int(2.5 * one), loader=loader)
    cache.get("a")
    cache.get("bb")
    cache.get("a")  # a is now more recently used than bb
    cache.get("ccc")
    assert cache.loaded() == ["a", "ccc"]
    assert cache.state("bb") is LoadState.EVICTED
    assert cache.used_bytes() <= cache.memory_budget_bytes
    cache.get("bb")
    assert cache.loaded() == ["ccc", "bb"]
    assert loader.loads == ["a", "bb", "ccc", "bb"]


def test_failed_load_is_reported_and_retried() -> None:
    calls = []

    def flaky(entry: ModelEntry) -> DiffusionPipeline:
        calls.append(entry.name)
        if len(calls) == 1:
            raise OSError("disk on fire")
        return build_tiny_pipeline("sd15")

    cache = PipelineCache(_catalog("a"), memory_budget_bytes=1 << 40, loader=flaky)
    with pytest.raises(ModelLoadError, match="model 'a': loading failed: disk on fire"):
        cache.get("a")
    assert cache.state("a") is LoadState.FAILED
    assert cache.last_error("a") == "disk on fire"
    cache.get("a")
    assert cache.state("a") is LoadState.LOADED and len(calls) == 2


def test_concurrent_requests_load_a_model_once() -> None:
    loader = CountingLoader()
    cache = PipelineCache(_catalog("a"), memory_budget_bytes=1 << 40, loader=loader)
    got: list[DiffusionPipeline] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("a"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loader.loads == ["a"]
    assert len(got) == 4 and all(p is got[0] for p in got)


def test_lora_applies_for_its_job_only_and_stays_loaded(tiny_sd15_lora: Path) -> None:
    lora = LoraEntry("style", tiny_sd15_lora)
    cache = PipelineCache(_catalog("a", loras=(lora,)), memory_budget_bytes=1 << 40, loader=CountingLoader())
    plain = tiny_spec()
    with cache.job(plain) as pipe:
        base = _one_image(pipe)
    with cache.job(tiny_spec(loras=(LoraRef("Style", 1.0),))) as pipe:
        styled = _one_image(pipe)
        adapters = pipe.get_list_adapters()
    with cache.job(plain) as pipe:
        after = _one_image(pipe)
    assert np.abs(styled - base).max() > 0  # the LoRA changed the picture
    assert np.array_equal(after, base)  # and the next job renders exactly as before it
    assert adapters == {"unet": ["lora_style"]}
    assert cache.get("a").get_list_adapters() == {"unet": ["lora_style"]}  # kept for reuse

    with (
        pytest.raises(KeyError, match="has no LoRA 'other'"),
        cache.job(tiny_spec(loras=(LoraRef("other"),))),
    ):
        pass


def test_lora_is_switched_off_when_the_job_fails(tiny_sd15_lora: Path) -> None:
    cache = PipelineCache(
        _catalog("a", loras=(LoraEntry("style", tiny_sd15_lora),)),
        memory_budget_bytes=1 << 40,
        loader=CountingLoader(),
    )
    with pytest.raises(RuntimeError, match="boom"), cache.job(tiny_spec(loras=(LoraRef("style", 0.7),))):
        raise RuntimeError("boom")
    pipe = cache.get("a")
    assert all(not layer.merged and layer.disable_adapters for layer in _lora_layers(pipe))


def _lora_layers(pipe: DiffusionPipeline) -> list:  # type: ignore[type-arg]
    from peft.tuners.lora import LoraLayer

    layers = [m for m in pipe.unet.modules() if isinstance(m, LoraLayer)]
    assert layers
    return layers


def test_each_job_gets_a_fresh_scheduler_and_the_pipeline_keeps_its_own(tiny_sd15: DiffusionPipeline) -> None:
    own = tiny_sd15.scheduler
    seen = []

    def spy(pipe: DiffusionPipeline, step: int, timestep: object, tensors: dict) -> dict:  # type: ignore[type-arg]
        seen.append(pipe.scheduler)
        return tensors

    render(tiny_sd15, tiny_spec(sampler="Euler a"), num_images=1, callback_on_step_end=spy)
    render(tiny_sd15, tiny_spec(sampler="Euler a"), num_images=1, callback_on_step_end=spy)
    assert type(seen[0]).__name__ == "EulerAncestralDiscreteScheduler"
    assert seen[0] is not seen[-1]  # a new instance per job
    assert tiny_sd15.scheduler is own  # put back after the job
