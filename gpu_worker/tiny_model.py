"""Tiny Stable Diffusion pipelines with random weights, built offline from config.

The classes are the real ones (``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel``,
``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``), only the sizes are small (the
sizes of diffusers' own ``get_dummy_components``), so every code path that runs on a real
checkpoint runs here in seconds on a CPU. The pipelines draw noise, not pictures: they are
the project's offline default model and the fixture of the worker's tests.

Building is deterministic: the same family and seed give the same weights, and
:func:`write_tiny_model` writes byte-identical ``.safetensors`` files for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal, cast, get_args

import torch

# Imported from their modules: the package root's lazy ``__init__`` shows type checkers the
# dummy placeholder classes instead of the real ones.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from gpu_worker.tokenizer import build_clip_tokenizer

TinyFamily = Literal["sd15", "sdxl"]

TINY_FAMILIES: tuple[str, ...] = get_args(TinyFamily)

# Words that become single tokens, so that common prompts tokenize the way they would with a
# real CLIP vocabulary (one token per word) and prompt-length limits behave realistically.
_PROMPT_WORDS_TEXT = """
    a an the of in on at with and or by from to for under over near behind inside
    cat dog bird fish horse fox wolf owl lion tiger dragon robot knight wizard astronaut
    girl boy man woman person portrait face eyes hair hands child old young
    castle city street house room forest mountain lake river sea ocean beach desert
    island sky cloud clouds sun moon stars space planet night day sunset sunrise
    rain snow fog storm fire water light shadow tree trees flower flowers garden
    red orange yellow green blue purple pink black white gray gold silver brown
    big small tall tiny huge giant little beautiful cute dark bright colorful
    photo photograph painting drawing sketch illustration render watercolor oil
    digital art anime cartoon pixel cinematic realistic photorealistic detailed
    highly intricate sharp focus bokeh lighting dramatic soft volumetric studio
    style by artist trending masterpiece best quality high resolution 4k 8k hdr
    blurry ugly deformed lowres bad anatomy extra fingers watermark text signature
    cropped worst low jpeg artifacts noise
"""
PROMPT_WORDS: tuple[str, ...] = tuple(_PROMPT_WORDS_TEXT.split())

_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def build_tiny_tokenizer() -> CLIPTokenizer:
    """The offline CLIP tokenizer of the tiny models (77-token context, :data:`PROMPT_WORDS`)."""
    return build_clip_tokenizer(PROMPT_WORDS, model_max_length=77)


def _text_config(vocab_size: int, *, projection_dim: int | None = None) -> CLIPTextConfig:
    # The token ids match the offline tokenizer (BOS 0, EOS = PAD 1): CLIPTextModel pools
    # the hidden state at the first EOS token, which needs the right id.
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        max_position_embeddings=77,
        vocab_size=vocab_size,
        hidden_act="gelu",
    )
    if projection_dim is not None:
        config.projection_dim = projection_dim
    return config


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )


def build_tiny_pipeline(family: TinyFamily, *, seed: int = 0) -> DiffusionPipeline:
    """Build a tiny pipeline of the real diffusers classes with random weights.

    The UNet has ``block_out_channels=(32, 64)`` and a 32x32 latent sample size; the VAE
    downsamples by 2, so the native image size is 64x64.

    Args:
        family: ``"sd15"`` (one CLIP text encoder) or ``"sdxl"`` (two text encoders, the
            second with a projection, and SDXL's added time/text conditioning).
        seed: seeds the random weights; the same seed gives the same weights.

    Returns:
        A ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` on the CPU in float32,
        with an Euler scheduler and no safety checker.

    Raises:
        ValueError: for an unknown family.
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}; expected one of {', '.join(TINY_FAMILIES)}")
    tokenizer = build_tiny_tokenizer()
    vocab_size = len(tokenizer)
    # One seed before each component, so a change in one component's size never shifts the
    # weights of the others.
    if family == "sd15":
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
        )
        torch.manual_seed(seed + 1)
        vae = _tiny_vae()
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(_text_config(vocab_size))
        sd_pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=EulerDiscreteScheduler(**_SCHEDULER_CONFIG),
            # diffusers annotates these as required but documents None as "not used";
            # moderation is the worker's own step, not the pipeline's.
            safety_checker=None,  # type: ignore[arg-type]
            feature_extractor=None,  # type: ignore[arg-type]
            image_encoder=None,  # type: ignore[arg-type]
            requires_safety_checker=False,
        )
        sd_pipe.set_progress_bar_config(disable=True)
        return sd_pipe

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # 6 time ids x 8 + the pooled text embedding of the second encoder (32).
        projection_class_embeddings_input_dim=80,
        # Both encoders' hidden states concatenated: 32 + 32.
        cross_attention_dim=64,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config(vocab_size, projection_dim=32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(vocab_size, projection_dim=32))
    xl_pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=build_tiny_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True,
    )
    xl_pipe.set_progress_bar_config(disable=True)
    return xl_pipe


def write_tiny_model(out_dir: str | Path, family: TinyFamily = "sd15", seed: int = 0) -> Path:
    """Write a tiny pipeline as a diffusers folder (``model_index.json`` + safetensors).

    Args:
        out_dir: the folder to write (created if missing; files in it are overwritten).
        family: ``"sd15"`` or ``"sdxl"``.
        seed: seeds the random weights; the same seed writes byte-identical weight files.

    Returns:
        ``out_dir`` as a ``Path``, loadable with ``DiffusionPipeline.from_pretrained``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(family, seed=seed)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_model_main(argv: list[str]) -> int:
    """``imaginarium build-tiny-model OUT_DIR [--family sd15|sdxl] [--seed N]``.

    Args:
        argv: the command's arguments (without the command name).

    Returns:
        The exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="imaginarium build-tiny-model",
        description="Write the random-weights test model (a diffusers folder) without downloading anything.",
    )
    parser.add_argument("out_dir", type=Path, help="folder to write the model to")
    parser.add_argument("--family", choices=TINY_FAMILIES, default="sd15", help="model shape (default: sd15)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    args = parser.parse_args(argv)
    out = write_tiny_model(args.out_dir, cast(TinyFamily, args.family), seed=args.seed)
    print(f"wrote tiny {args.family} model (seed {args.seed}) to {out}", file=sys.stdout)
    return 0
