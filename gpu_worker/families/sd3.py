"""Stable Diffusion 3 and 3.5: an MMDiT transformer, flow matching, two CLIP text encoders
(with projections) and a T5, a 16-channel latent space."""

from __future__ import annotations

from typing import Any

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, PromptStyle


def tiny(seed: int = 0) -> object:
    """A ``StableDiffusion3Pipeline`` of small random weights (the sizes of diffusers' own
    SD3 tests, with the 16 latent channels its inpainting needs); a VAE that does not
    downsample."""
    from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import CLIPTextModelWithProjection

    tokenizer = tiny_parts.tokenizer()
    t5_tokenizer = tiny_parts.t5_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=16,
    )
    torch.manual_seed(seed + 1)
    vae = tiny_parts.flat_vae(16)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModelWithProjection(tiny_parts.text_config(len(tokenizer), projection_dim=32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(tiny_parts.text_config(len(tokenizer), projection_dim=32))
    torch.manual_seed(seed + 4)
    text_encoder_3 = tiny_parts.t5_encoder(len(t5_tokenizer))
    pipe = StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tiny_parts.tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tokenizer,
        transformer=transformer,
    )
    return tiny_parts.inference_mode(pipe)


def encode_text(pipe: Any, text: str, clip_skip: int | None) -> dict[str, Any]:
    """SD 3's own encoding of one text (both CLIPs and T5), with its clip skip."""
    embeds, _neg, pooled, _neg_pooled = pipe.encode_prompt(
        prompt=text, prompt_2=text, prompt_3=text, num_images_per_prompt=1,
        do_classifier_free_guidance=False, clip_skip=clip_skip,
    )  # fmt: skip
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


ADAPTER = Adapter(
    families=(ModelFamily.SD3,),
    pipelines={
        Task.TEXT2IMG: "StableDiffusion3Pipeline",
        Task.IMG2IMG: "StableDiffusion3Img2ImgPipeline",
        Task.INPAINT: "StableDiffusion3InpaintPipeline",
    },
    # diffusers has no SD3 ControlNet image-to-image pipeline: --cn with image prompts is refused there.
    control_pipelines={
        Task.TEXT2IMG: "StableDiffusion3ControlNetPipeline",
        Task.INPAINT: "StableDiffusion3ControlNetInpaintingPipeline",
    },
    controlnet_class="SD3ControlNetModel",
    multi_controlnet_class="diffusers.models.controlnets.controlnet_sd3.SD3MultiControlNetModel",
    control_image_arg="control_image",
    # The T5 encoder is past what A1111 weighting covers: the pipeline encodes the text.
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="SD3Transformer2DModel",
    large_text_encoders=("text_encoder_3",),
    encode_text=encode_text,
    tiny=tiny,
)
