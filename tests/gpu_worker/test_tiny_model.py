"""The tiny random-weights pipelines: real classes, deterministic weights, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

from gpu_worker.tiny_model import build_tiny_model_main, build_tiny_pipeline, write_tiny_model
from tests.gpu_worker.conftest import TINY_SIZE


def _weights(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.safetensors"))}


def test_families_are_the_real_pipeline_classes(
    tiny_sd15: DiffusionPipeline, tiny_sdxl: DiffusionPipeline
) -> None:
    assert isinstance(tiny_sd15, StableDiffusionPipeline)
    assert isinstance(tiny_sdxl, StableDiffusionXLPipeline)
    assert tiny_sdxl.text_encoder_2 is not None
    # The tokenizer and the text encoder agree on the vocabulary and the EOS id used for pooling.
    assert tiny_sd15.text_encoder.config.vocab_size == len(tiny_sd15.tokenizer)
    assert tiny_sd15.text_encoder.config.eos_token_id == tiny_sd15.tokenizer.eos_token_id


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = (build_tiny_pipeline("sd15", seed=s) for s in (3, 3, 4))
    assert torch.equal(a.unet.conv_in.weight, b.unet.conv_in.weight)
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tiny model family"):
        build_tiny_pipeline("sd9")


def test_written_weights_are_byte_identical_and_load_offline(tmp_path: Path, tiny_sd15_dir: Path) -> None:
    again = write_tiny_model(tmp_path / "again", "sd15", seed=0)
    assert _weights(again) == _weights(tiny_sd15_dir)
    assert set(_weights(again)) == {
        "text_encoder/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }
    assert not list(again.rglob("*.bin"))
    loaded = StableDiffusionPipeline.from_pretrained(again, local_files_only=True, use_safetensors=True)
    assert loaded.tokenizer("a red fox").input_ids == [
        0,
        *loaded.tokenizer.convert_tokens_to_ids(["a</w>", "red</w>", "fox</w>"]),
        1,
    ]
    assert loaded.unet.config.sample_size * loaded.vae_scale_factor == 2 * TINY_SIZE


def test_cli_writes_the_sdxl_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_tiny_model_main([str(tmp_path / "xl"), "--family", "sdxl", "--seed", "1"]) == 0
    assert "sdxl" in capsys.readouterr().out
    assert (tmp_path / "xl" / "text_encoder_2" / "model.safetensors").is_file()
    assert (tmp_path / "xl" / "tokenizer_2").is_dir()
