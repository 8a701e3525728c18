"""Loading models and LoRAs: offline, safetensors only, sha256 pins checked before loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

from core.models import LoraEntry, ModelEntry, ModelFamily, ModelSource, SourceKind
from core.models_file import load_catalog
from gpu_worker.registry import (
    IntegrityError,
    ModelLoadError,
    check_file,
    estimate_entry_bytes,
    load_lora,
    load_pipeline,
    module_bytes,
    select_device,
    sha256_file,
)
from gpu_worker.tiny_model import build_tiny_pipeline


def _entry(source: ModelSource, family: ModelFamily = ModelFamily.SD15) -> ModelEntry:
    tiny = load_catalog(None, data_dir="/nonexistent").get("tiny")
    return ModelEntry(name="m", family=family, source=source, defaults=tiny.defaults)


def test_cpu_runs_in_float32() -> None:
    assert select_device("cpu") == (torch.device("cpu"), torch.float32)
    if not torch.cuda.is_available():
        assert select_device() == (torch.device("cpu"), torch.float32)
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            select_device("cuda")


def test_builtin_tiny_is_written_on_first_use_then_reused(
    tmp_path: Path, tiny_sd15: DiffusionPipeline
) -> None:
    entry = load_catalog(None, data_dir=tmp_path).get("tiny")
    pipe = load_pipeline(entry, device="cpu")
    weights = tmp_path / "models" / "tiny" / "unet" / "diffusion_pytorch_model.safetensors"
    assert isinstance(pipe, StableDiffusionPipeline)
    assert weights.is_file()
    assert not list((tmp_path / "models").glob(".*.tmp"))  # no staging folder left behind
    assert torch.equal(pipe.unet.conv_in.weight, tiny_sd15.unet.conv_in.weight)
    mtime = weights.stat().st_mtime_ns
    load_pipeline(entry, device="cpu")
    assert weights.stat().st_mtime_ns == mtime
    assert estimate_entry_bytes(entry) == pytest.approx(module_bytes(pipe), rel=0.05)


def test_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match=r"only pickle weights .*convert them to \.safetensors"):
        load_pipeline(_entry(ModelSource(SourceKind.FOLDER, str(tmp_path))), device="cpu")


def test_pinned_single_file_with_wrong_hash_is_refused_before_loading(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"not really a checkpoint")
    (tmp_path / "config").mkdir()
    source = ModelSource(SourceKind.SINGLE_FILE, str(checkpoint), config=tmp_path / "config", sha256="0" * 64)
    with pytest.raises(
        IntegrityError, match=r"sha256 of .*model\.safetensors is [0-9a-f]{64}, but models.toml pins 0{64}"
    ):
        load_pipeline(_entry(source), device="cpu")
    # With the right pin the file gets as far as diffusers, which rejects the bytes.
    right = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert sha256_file(checkpoint) == right
    with pytest.raises(ModelLoadError, match="loading failed"):
        load_pipeline(
            _entry(ModelSource(SourceKind.SINGLE_FILE, str(checkpoint), tmp_path / "config", right)),
            device="cpu",
        )


def test_check_file_refuses_pickles_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"is a pickle format \(\.ckpt\).*convert it to \.safetensors"):
        check_file(tmp_path / "model.ckpt", None, "model 'm'")
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_file(tmp_path / "gone.safetensors", None, "model 'm'")


def test_lora_pin_is_checked_and_lora_loads_as_named_adapter(tiny_sd15_lora: Path) -> None:
    pipe = build_tiny_pipeline("sd15")
    with pytest.raises(IntegrityError, match="refusing to load"):
        load_lora(pipe, LoraEntry("style", tiny_sd15_lora, sha256="f" * 64))
    assert not getattr(pipe.unet, "peft_config", None)  # nothing of the refused file was loaded
    pin = hashlib.sha256(tiny_sd15_lora.read_bytes()).hexdigest()
    name = load_lora(pipe, LoraEntry("My.Style", tiny_sd15_lora, sha256=pin))
    assert name == "lora_my_style"
    assert pipe.get_list_adapters() == {"unet": [name]}


def test_sdxl_folder_loads_offline_as_an_sdxl_pipeline(tmp_path: Path) -> None:
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    from gpu_worker.tiny_model import write_tiny_model

    folder = write_tiny_model(tmp_path / "xl", "sdxl", seed=0)
    pipe = load_pipeline(_entry(ModelSource(SourceKind.FOLDER, str(folder)), ModelFamily.SDXL), device="cpu")
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe.unet.dtype == torch.float32


def test_memory_options_of_a_model_entry_apply_when_it_loads(tiny_sd15_dir: Path) -> None:
    import dataclasses

    from core.models import MemoryOptions

    base = _entry(ModelSource(SourceKind.FOLDER, str(tiny_sd15_dir)), ModelFamily.SD15)
    entry = dataclasses.replace(base, memory=MemoryOptions(dtype="bf16", vae_tiling=True, vae_slicing=True))

    pipe = load_pipeline(entry, device="cpu")

    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    image = pipe("a red circle", num_inference_steps=1, height=32, width=32, output_type="pil").images[0]
    assert image.size == (32, 32)
    with pytest.raises(ModelLoadError, match="offload = 'model' needs a CUDA GPU"):
        load_pipeline(dataclasses.replace(base, memory=MemoryOptions(offload="model")), device="cpu")
