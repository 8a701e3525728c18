"""The components of the ``shapes`` model, sized for training and rendering on a CPU.

They are diffusers' and transformers' own classes (``AutoencoderKL``, ``CLIPTextModel``,
``UNet2DConditionModel``) so that the standard ``StableDiffusionPipeline`` and
``AutoPipelineForText2Image`` load the saved folder like any SD 1.5 checkpoint. Only the
sizes differ:

- the VAE downsamples by 4 (64x64 pixels -> 16x16x4 latents): by 8 a small shape would be
  two latent pixels across, and 4 latent channels keep the inpainting pipelines' 4-channel
  path working;
- the UNet works on 16x16 latents with three levels (16, 8, 4) and cross-attention on the
  two coarse ones, where position, colour and class are decided;
- the text encoder is a two-layer CLIP transformer over the offline tokenizer built from
  the captions' vocabulary, with CLIP's 77-token context so the worker's 75-token prompt
  windows apply unchanged.

The noise schedule is DDPM's linear one (betas 1e-4 to 0.02). At these latent sizes its
last step leaves almost no signal (alpha-bar 4e-5), so the model learns to choose the
background colour from pure noise (SD's scaled-linear schedule leaves enough of the image's
mean in its last step that a model trained on it cannot change a flat colour much), and
every scheduler diffusers has accepts it. The UNet predicts velocity (v), which stays well
conditioned at both ends of that schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Imported from their modules: the package root's lazy ``__init__`` shows type checkers
# placeholder classes instead of the real ones.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from gpu_worker.tokenizer import build_clip_tokenizer
from gpu_worker.training.dataset import vocabulary
from gpu_worker.training.steps import step_seed

NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "v_prediction",
    # Start sampling at the last training step (pure noise) whatever the step count.
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}
"""The training noise schedule; the shipped scheduler config repeats it."""

DEFAULT_STEPS = 20
"""Denoising steps the model is evaluated and shipped with (DPM-Solver++ 2M)."""
DEFAULT_GUIDANCE = 3.0
"""Classifier-free guidance scale the model is evaluated and shipped with."""


@dataclass(frozen=True, slots=True)
class ModelSizes:
    """The widths that set the model's size and speed (defaults: the shipped model)."""

    vae_channels: tuple[int, ...] = (16, 32, 32)
    """VAE block widths; len - 1 is the number of 2x downsamplings."""
    unet_channels: tuple[int, ...] = (32, 64, 64)
    """UNet block widths (one block per latent resolution)."""
    text_width: int = 64
    """Text encoder hidden size, which is also the UNet's cross-attention width."""
    text_layers: int = 2
    """Text encoder transformer layers."""
    unet_text_time: bool = True
    """Also condition every UNet ResNet block on the prompt, pooled by attention and added to
    the timestep embedding (diffusers' ``addition_embed_type="text"``). Cross-attention sits
    on the coarser levels only; this brings the prompt to the finest level, where a small
    shape's outline is drawn, for a fifth more time per step (cross-attention there: 2.7x).
    The shipped r5 and r7 have it (r2 did not: ``--no-unet-text-time``)."""


def build_tokenizer() -> CLIPTokenizer:
    """The offline tokenizer: every caption word is one token, 77-token context."""
    return build_clip_tokenizer(vocabulary(), model_max_length=77)


def build_vae(sizes: ModelSizes) -> AutoencoderKL:
    """A small ``AutoencoderKL`` with 4 latent channels (random weights)."""
    depth = len(sizes.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=sizes.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        # Groups of 4 channels: group norm over a flat colour keeps only the differences
        # between a group's channels, so groups of 1-2 channels would lose the colour.
        norm_num_groups=max(1, sizes.vae_channels[0] // 4),
        sample_size=64,
        # Attention at 16x16 buys nothing for flat shapes and costs a quarter of the VAE's time.
        mid_block_add_attention=False,
    )


def build_text_encoder(sizes: ModelSizes, vocab_size: int) -> CLIPTextModel:
    """A small ``CLIPTextModel`` whose token ids match :func:`build_tokenizer` (random weights)."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=sizes.text_width,
        intermediate_size=2 * sizes.text_width,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        # The offline tokenizer's ids: BOS 0, EOS = PAD 1 (CLIP pools at the first EOS).
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_act="gelu",
    )
    return CLIPTextModel(config)


def build_unet(sizes: ModelSizes) -> UNet2DConditionModel:
    """A small ``UNet2DConditionModel`` for 4-channel latents (random weights)."""
    levels = len(sizes.unet_channels)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
        block_out_channels=sizes.unet_channels,
        layers_per_block=1,
        cross_attention_dim=sizes.text_width,
        # diffusers reads this as the number of heads (a historical misnomer).
        attention_head_dim=4,
        norm_num_groups=8,
        **({"addition_embed_type": "text", "addition_embed_type_num_heads": 4} if sizes.unet_text_time else {}),
    )


def build_scheduler() -> DPMSolverMultistepScheduler:
    """The shipped default scheduler: DPM-Solver++ 2M on the training noise schedule."""
    return DPMSolverMultistepScheduler(**NOISE_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2)


def widen_vae(vae: Any, factor: int, seed: int = 0) -> Any:
    """An ``AutoencoderKL`` with ``factor`` times the channels that encodes and decodes exactly
    as ``vae`` does, so that a decoder stage can go on from it with more capacity.

    Each weight of ``vae`` sits in the leading slice of its wider counterpart; group norms keep
    their groups (``norm_num_groups`` grows by the same factor, so the old channels form the
    first groups). The encoder's new channels are zero throughout, so it stays the same function
    (the UNet's latents keep their meaning); the decoder's new channels start random but feed
    nothing yet (their outgoing weights are zero), so it draws the same pictures until trained.
    """
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    config["block_out_channels"] = [c * factor for c in config["block_out_channels"]]
    config["norm_num_groups"] = config["norm_num_groups"] * factor
    wide = AutoencoderKL(**config)
    old = vae.state_dict()
    drawn = torch.Generator().manual_seed(step_seed(seed, "widen-decoder"))
    state = {}
    for name, target in wide.state_dict().items():
        source = old[name]
        value = torch.zeros_like(target)
        if "norm" in name and name.endswith(".weight"):  # a group norm's scale (its bias stays 0)
            value.fill_(1.0)
        if name.startswith("decoder.") and target.dim() >= 2 and target.shape[0] > source.shape[0]:
            value[source.shape[0]:] = torch.randn(target[source.shape[0]:].shape, generator=drawn) / target[0].numel() ** 0.5
        value[tuple(slice(0, n) for n in source.shape)] = source
        state[name] = value
    wide.load_state_dict(state)
    return wide.to(device=next(vae.parameters()).device, dtype=next(vae.parameters()).dtype)
