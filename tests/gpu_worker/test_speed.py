"""Speed options of a model entry: attention backend, channels-last, compile warmed at load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.models import ModelEntry, ModelFamily, ModelSource, SourceKind, SpeedOptions
from core.models_file import load_catalog
from gpu_worker import speed
from gpu_worker.registry import ModelLoadError, load_pipeline
from gpu_worker.tiny_model import write_tiny_model


def _entry(folder: Path, family: ModelFamily, options: SpeedOptions) -> ModelEntry:
    tiny = load_catalog(None, data_dir="/nonexistent").get("tiny")
    entry = ModelEntry(name="s", family=family, source=ModelSource(SourceKind.FOLDER, str(folder)),
                       defaults=tiny.defaults)
    return dataclasses.replace(entry, speed=options)


def _render(pipe: object) -> np.ndarray:
    out = pipe("a red circle", num_inference_steps=2, height=32, width=32,  # type: ignore[operator]
               output_type="np", generator=torch.Generator().manual_seed(0))
    return np.asarray(out.images[0])


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("flux"), "flux", seed=0)


def test_an_attention_backend_is_set_on_a_transformer_family(flux_dir: Path) -> None:
    plain = load_pipeline(_entry(flux_dir, ModelFamily.FLUX, SpeedOptions()), device="cpu")
    math = load_pipeline(_entry(flux_dir, ModelFamily.FLUX, SpeedOptions(attention="_native_math")), device="cpu")
    backends = {getattr(m.processor, "_attention_backend", None) for m in math.transformer.modules()
                if hasattr(m, "processor")}
    assert {str(getattr(b, "value", b)) for b in backends} == {"_native_math"}
    np.testing.assert_allclose(_render(math), _render(plain), atol=1e-4)


def test_attention_backends_are_refused_where_they_cannot_apply(tiny_sd15_dir: Path, flux_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="applies to transformer families"):
        load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, SpeedOptions(attention="flash")), device="cpu")
    with pytest.raises(ModelLoadError, match="attention backend 'no_such_backend'"):
        load_pipeline(_entry(flux_dir, ModelFamily.FLUX, SpeedOptions(attention="no_such_backend")), device="cpu")


def test_channels_last_changes_the_memory_format_not_the_image(tiny_sd15_dir: Path) -> None:
    plain = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, SpeedOptions()), device="cpu")
    nhwc = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, SpeedOptions(channels_last=True)), device="cpu")
    assert nhwc.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert nhwc.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(_render(nhwc), _render(plain), atol=1e-4)


@pytest.mark.parametrize("mode", ["regional", "full"])
def test_compile_wraps_the_denoiser_and_compiles_before_the_pipeline_is_handed_out(
    tiny_sd15_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    import torch._dynamo

    # The eager backend traces through dynamo as inductor would, without generating C++.
    monkeypatch.setattr(speed, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    warmed: list[tuple[int, int]] = []
    real_warm_up = speed.warm_up

    def counting_warm_up(pipe: object, entry: ModelEntry) -> float:
        warmed.append(entry.defaults.size_for((1, 1)))
        return real_warm_up(pipe, entry)

    monkeypatch.setattr(speed, "warm_up", counting_warm_up)
    plain = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, SpeedOptions()), device="cpu")
    pipe = load_pipeline(_entry(tiny_sd15_dir, ModelFamily.SD15, SpeedOptions(compile=mode)), device="cpu")

    assert len(warmed) == 1
    compiled = [m for m in pipe.unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    if mode == "regional":
        assert compiled and all(type(m).__name__ == "BasicTransformerBlock" for m in compiled)
    else:
        assert compiled == [pipe.unet]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    np.testing.assert_allclose(_render(pipe), _render(plain), atol=1e-4)
