"""Z-Image: a single-stream DiT, flow matching, a Qwen3 language model as text encoder, the
FLUX.1 16-channel VAE, sides in steps of 16 (the VAE's 8 times a 2x2 patch).

Its prompt embeddings are the language model's hidden states of the prompt's own tokens, one
sequence per prompt of its own length: parts of a weighted multi-prompt have no common shape
to blend, so the family record refuses ``::`` weights (:attr:`core.families.Family.weights`)
and the pipeline gets the prompt text.
"""

from __future__ import annotations

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, PromptStyle
from gpu_worker.families.flux import FLUX1_PREVIEW


def tiny(seed: int = 0) -> object:
    """A ``ZImagePipeline`` of small random weights (the sizes of diffusers' own Z-Image
    tests): a two-layer transformer, a two-layer Qwen3 model with the offline Qwen
    tokenizer, and a 16-channel VAE that does not downsample (sides in steps of 2)."""
    from diffusers.models.transformers.transformer_z_image import ZImageTransformer2DModel
    from diffusers.pipelines.z_image.pipeline_z_image import ZImagePipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3Model

    tokenizer = tiny_parts.qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():
        # Made with torch.empty: fixed so the same seed gives the same weights.
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    torch.manual_seed(seed + 1)
    vae = tiny_parts.flat_vae(16)
    torch.manual_seed(seed + 2)
    text_encoder = Qwen3Model(tiny_parts.qwen3_config(tokenizer))
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.Z_IMAGE,),
    pipelines={
        Task.TEXT2IMG: "ZImagePipeline",
        Task.IMG2IMG: "ZImageImg2ImgPipeline",
        Task.INPAINT: "ZImageInpaintPipeline",
    },
    # One control at a time (the pipeline runs one ControlNet); the ControlNet shares the
    # transformer's embedders and refiners, linked in when it is loaded.
    control_pipelines={
        Task.TEXT2IMG: "ZImageControlNetPipeline",
        Task.INPAINT: "ZImageControlNetInpaintPipeline",
    },
    controlnet_class="ZImageControlNetModel",
    control_image_arg="control_image",
    controlnet_shares_transformer=True,
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="ZImageTransformer2DModel",
    large_text_encoders=("text_encoder",),
    preview=FLUX1_PREVIEW,
    tiny=tiny,
)
