"""FLUX.1: flow matching, T5 and CLIP text encoders, a 16-channel latent space packed 2x2."""

from __future__ import annotations

from typing import Any

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, LatentPreview, PromptStyle

FLUX1_PREVIEW = LatentPreview(
    "flux",
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)
"""The latent-to-RGB projection of the FLUX.1 VAE's 16 channels (Z-Image uses the same VAE)."""


def tiny(seed: int = 0) -> object:
    """A ``FluxPipeline`` of small random weights (the sizes of diffusers' own FLUX tests):
    a one-block transformer, a CLIP and a T5 encoder with offline tokenizers, and a
    one-channel VAE that does not downsample (sides in steps of 2)."""
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModel

    tokenizer = tiny_parts.tokenizer()
    t5_tokenizer = tiny_parts.t5_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(seed + 1)
    vae = tiny_parts.flat_vae(1)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(tiny_parts.text_config(len(tokenizer), projection_dim=32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = tiny_parts.t5_encoder(len(t5_tokenizer))
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    return tiny_parts.inference_mode(pipe)


NEGATIVE_PROMPT_CFG = 2.0
"""The true classifier-free guidance scale of a FLUX.1 job with a negative prompt (``--no``).

FLUX.1 [dev] and [schnell] are guidance-distilled: ``guidance_scale`` is an input of the
transformer, and a negative prompt is used only with true guidance, which runs the
transformer twice per step. A job with ``--no`` gets it at this scale (twice the time);
one without runs once, as the model was distilled to."""


def call_kwargs(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The render call in FLUX.1's terms: true guidance when the job has a negative prompt."""
    out = dict(call)
    negative = out.get("negative_prompt")
    if negative and any(negative if isinstance(negative, list) else [negative]):
        out.setdefault("true_cfg_scale", NEGATIVE_PROMPT_CFG)
    return out


def encode_text(pipe: Any, text: str, clip_skip: int | None) -> dict[str, Any]:
    """FLUX's own encoding of one text (CLIP pooled, T5 sequence); it has no clip skip."""
    embeds, pooled, _ids = pipe.encode_prompt(prompt=text, prompt_2=text, num_images_per_prompt=1)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


ADAPTER = Adapter(
    families=(ModelFamily.FLUX,),
    pipelines={
        Task.TEXT2IMG: "FluxPipeline",
        Task.IMG2IMG: "FluxImg2ImgPipeline",
        Task.INPAINT: "FluxInpaintPipeline",
    },
    control_pipelines={
        Task.TEXT2IMG: "FluxControlNetPipeline",
        Task.IMG2IMG: "FluxControlNetImg2ImgPipeline",
        Task.INPAINT: "FluxControlNetInpaintPipeline",
    },
    controlnet_class="FluxControlNetModel",
    multi_controlnet_class="diffusers.models.controlnets.controlnet_flux.FluxMultiControlNetModel",
    control_image_arg="control_image",
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="FluxTransformer2DModel",
    large_text_encoders=("text_encoder_2",),
    preview=FLUX1_PREVIEW,
    encode_text=encode_text,
    call_kwargs=call_kwargs,
    tiny=tiny,
)
