"""Stable Diffusion XL (and SDXL Turbo): two CLIP text encoders and a pooled embedding."""

from __future__ import annotations

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, LatentPreview, PromptStyle


def tiny(seed: int = 0) -> object:
    """A ``StableDiffusionXLPipeline`` of small random weights (64x64 images, VAE factor 2)."""
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = tiny_parts.tokenizer()
    torch.manual_seed(seed)
    unet = tiny_parts.unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # 6 time ids x 8 + the pooled text embedding of the second encoder (32).
        projection_class_embeddings_input_dim=80,
        # Both encoders' hidden states concatenated: 32 + 32.
        cross_attention_dim=64,
    )
    torch.manual_seed(seed + 1)
    vae = tiny_parts.vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(tiny_parts.text_config(len(tokenizer), projection_dim=32))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(tiny_parts.text_config(len(tokenizer), projection_dim=32))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tiny_parts.tokenizer(),
        unet=unet,
        scheduler=tiny_parts.scheduler(),
        force_zeros_for_empty_prompt=True,
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.SDXL, ModelFamily.SDXL_TURBO),
    pipelines={
        Task.TEXT2IMG: "StableDiffusionXLPipeline",
        Task.IMG2IMG: "StableDiffusionXLImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionXLInpaintPipeline",
    },
    prompt_style=PromptStyle.CLIP_PAIR,
    control_pipelines={
        Task.TEXT2IMG: "StableDiffusionXLControlNetPipeline",
        Task.IMG2IMG: "StableDiffusionXLControlNetImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionXLControlNetInpaintPipeline",
    },
    preview=LatentPreview(
        "sdxl",
        (
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        (0.1084, -0.0175, -0.0011),
    ),
    tiny=tiny,
)
