"""Quantised weights at load: torchao int8 on the CPU, GGUF denoiser files, clear refusals."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from core.models import MemoryOptions, ModelEntry, ModelFamily, ModelSource, SourceKind
from core.models_file import load_catalog
from gpu_worker.families import adapter
from gpu_worker.registry import IntegrityError, ModelLoadError, load_pipeline
from gpu_worker.tiny_model import write_tiny_model

pytest.importorskip("torchao")
gguf = pytest.importorskip("gguf")


def _entry(folder: Path, family: ModelFamily, **changes: object) -> ModelEntry:
    tiny = load_catalog(None, data_dir="/nonexistent").get("tiny")
    entry = ModelEntry(name="q", family=family, source=ModelSource(SourceKind.FOLDER, str(folder)),
                       defaults=tiny.defaults)
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


def _render(pipe: object) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    out = pipe("a red circle", num_inference_steps=2, height=64, width=64,  # type: ignore[operator]
               output_type="np", generator=generator)
    return np.asarray(out.images[0])


def _linear_weight_types(module: torch.nn.Module) -> set[str]:
    return {type(m.weight).__name__ for m in module.modules() if isinstance(m, torch.nn.Linear)}


def write_gguf(module: torch.nn.Module, path: Path) -> Path:
    """Write a module's weights as a GGUF file: Q8_0 where a row splits into 32-value blocks."""
    writer = gguf.GGUFWriter(str(path), arch="imaginarium-test")
    for key, value in module.state_dict().items():
        array = value.float().numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            quantised = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(key, quantised, raw_shape=quantised.shape,
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(key, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("flux"), "flux", seed=0)


def test_int8_quantises_the_denoiser_on_the_cpu_and_renders_nearly_alike(tiny_sd15_dir: Path) -> None:
    plain = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15), device="cpu")
    quantised = load_pipeline(
        _entry(tiny_sd15_dir, ModelFamily.SD15, memory=MemoryOptions(quantize="int8")), device="cpu"
    )
    assert _linear_weight_types(quantised.unet) == {"Int8Tensor"}
    assert _linear_weight_types(quantised.text_encoder) == {"Parameter"}
    reference, image = _render(plain), _render(quantised)
    difference = np.abs(reference - image)
    # Close to the full-precision render, yet not the same computation.
    assert 0 < difference.max() < 0.05 and difference.mean() < 0.005


def test_quantize_text_encoders_covers_the_language_model_encoder_only(flux_dir: Path) -> None:
    memory = MemoryOptions(quantize="int8", quantize_text_encoders=True)
    pipe = load_pipeline(_entry(flux_dir, ModelFamily.FLUX, memory=memory), device="cpu")
    assert adapter("flux").large_text_encoders == ("text_encoder_2",)
    assert _linear_weight_types(pipe.transformer) == {"Int8Tensor"}
    assert _linear_weight_types(pipe.text_encoder_2) == {"Int8Tensor"}  # T5
    assert _linear_weight_types(pipe.text_encoder) == {"Parameter"}  # CLIP stays as it is
    assert _render(pipe).shape == (64, 64, 3)


def test_a_gguf_denoiser_replaces_the_folders_and_stays_quantised(flux_dir: Path, tmp_path: Path) -> None:
    plain = load_pipeline(_entry(flux_dir, ModelFamily.FLUX), device="cpu")
    path = write_gguf(plain.transformer, tmp_path / "transformer-Q8_0.gguf")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    pipe = load_pipeline(_entry(flux_dir, ModelFamily.FLUX, denoiser=path, denoiser_sha256=digest), device="cpu")

    kinds = {type(p).__name__ for p in pipe.transformer.parameters()}
    assert "GGUFParameter" in kinds
    difference = np.abs(_render(plain) - _render(pipe))
    assert 0 < difference.max() < 0.05

    with pytest.raises(IntegrityError):
        load_pipeline(_entry(flux_dir, ModelFamily.FLUX, denoiser=path, denoiser_sha256="0" * 64), device="cpu")


def test_a_safetensors_denoiser_can_be_quantised_as_it_loads(tiny_sd15_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15), device="cpu")
    with torch.no_grad():
        for p in plain.unet.parameters():
            p.mul_(0.5)  # another denoiser than the folder's: the render must change
    path = tmp_path / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in plain.unet.state_dict().items()}, str(path))

    swapped = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, denoiser=path), device="cpu")
    both = load_pipeline(
        _entry(tiny_sd15_dir, ModelFamily.SD15, denoiser=path, memory=MemoryOptions(quantize="int8")),
        device="cpu",
    )
    assert torch.equal(swapped.unet.conv_in.weight, plain.unet.conv_in.weight)
    assert _linear_weight_types(both.unet) == {"Int8Tensor"}
    assert np.abs(_render(swapped) - _render(both)).max() < 0.05


@pytest.mark.parametrize("kind", ["int4", "fp8", "nf4"])
def test_gpu_only_quantisations_are_refused_on_the_cpu_by_name(tiny_sd15_dir: Path, kind: str) -> None:
    entry = _entry(tiny_sd15_dir, ModelFamily.SD15, memory=MemoryOptions(quantize=kind))
    with pytest.raises(ModelLoadError, match=f"model 'q': quantize = '{kind}' needs a CUDA GPU"):
        load_pipeline(entry, device="cpu")


def test_a_missing_library_is_named(tiny_sd15_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    entry = _entry(tiny_sd15_dir, ModelFamily.SD15, memory=MemoryOptions(quantize="int8"))
    with pytest.raises(ModelLoadError, match=r"needs the torchao package on the worker \(pip install torchao\)"):
        load_pipeline(entry, device="cpu")
