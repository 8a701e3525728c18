"""A model configured with a tiny autoencoder (``preview_vae``) gets decoded progress previews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from core.models import ModelConfigError
from core.models_file import load_catalog
from core.spec import JobSpec, PromptPart
from gpu_worker.ops.common import render
from gpu_worker.progress import ProgressEvent, ThrottledProgress, preview_decoder
from gpu_worker.registry import load_pipeline
from gpu_worker.tiny_model import write_tiny_model


def _tiny_autoencoder(folder: Path) -> Path:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        latent_channels=4,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(folder)
    return folder


def _models_file(tmp_path: Path, preview: str) -> Path:
    model = write_tiny_model(tmp_path / "model", "sd15")
    path = tmp_path / "models.toml"
    path.write_text(
        f'default = "mini"\n[models.mini]\nfamily = "sd15"\npath = "{model}"\n'
        f'pixel_budget = 4096\nsize_step = 16\nsteps = 3\npreview_vae = "{preview}"\n'
    )
    return path


def test_previews_are_decoded_by_the_configured_tiny_autoencoder(tmp_path: Path) -> None:
    _tiny_autoencoder(tmp_path / "taesd")
    entry = load_catalog(_models_file(tmp_path, "taesd"), data_dir=tmp_path).get("mini")
    assert entry.preview_vae == tmp_path / "taesd"
    pipe = load_pipeline(entry)
    decoder = preview_decoder(pipe)
    assert decoder is not None and type(decoder).__name__ == "AutoencoderTiny"

    decoded: list[Any] = []
    original = decoder.decode

    def counting(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        decoded.append(z.shape)
        return original(z, *args, **kwargs)

    decoder.decode = counting
    events: list[ProgressEvent] = []
    spec = JobSpec(parts=(PromptPart("a red circle"),), width=64, height=64, steps=3, seed=1)
    render(pipe, spec, callback_on_step_end=ThrottledProgress(events.append, min_interval=0).callback)

    assert [e.step for e in events] == [1, 2, 3]
    assert all(e.preview is not None for e in events)
    # Every preview went through the tiny decoder: four latents of the 64x64 images each time.
    assert decoded == [torch.Size([4, 4, 32, 32])] * 3


def test_a_preview_vae_that_is_not_a_diffusers_folder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelConfigError, match="preview_vae"):
        load_catalog(_models_file(tmp_path, "empty"), data_dir=tmp_path)
    folder = _tiny_autoencoder(tmp_path / "pickled")
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelConfigError, match="pickle"):
        load_catalog(_models_file(tmp_path, "pickled"), data_dir=tmp_path)
