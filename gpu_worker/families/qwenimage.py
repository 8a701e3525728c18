"""Qwen-Image: an MMDiT transformer, flow matching, the Qwen2.5-VL language model as text
encoder, a 16-channel VAE (Wan's, one frame), latents packed 2x2, sides in steps of 16.

Two things differ from the other flow families:

- classifier-free guidance is ``true_cfg_scale`` and runs only with a negative prompt
  (``guidance_scale`` is for guidance-distilled checkpoints), so :func:`call_kwargs` moves
  the job's guidance there and gives an empty negative prompt when the job has none;
- its prompt embeddings are per-prompt sequences of the language model's hidden states under
  a mask: parts of a weighted multi-prompt have no common shape to blend, so the family
  record refuses ``::`` weights (:attr:`core.families.Family.weights`).

No latent preview: the projection of this VAE's channels to RGB is not measured yet.
"""

from __future__ import annotations

from typing import Any

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, PromptStyle


def call_kwargs(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The render call in Qwen-Image's terms: guidance as ``true_cfg_scale``, which needs a
    negative prompt (an empty one when the job has none)."""
    out = dict(call)
    cfg = out.pop("guidance_scale", None)
    if cfg is not None:
        out["true_cfg_scale"] = float(cfg)
        if cfg > 1.0 and out.get("negative_prompt") is None and out.get("negative_prompt_embeds") is None:
            batch = len(out["prompt"]) if isinstance(out.get("prompt"), list) else 1
            out["negative_prompt"] = [" "] * batch
    return out


def tiny(seed: int = 0) -> object:
    """A ``QwenImagePipeline`` of small random weights (the sizes of diffusers' own
    Qwen-Image tests): a two-layer transformer, a two-layer Qwen2.5-VL model with the
    offline Qwen tokenizer, and a small VAE that downsamples by 4 (sides in steps of 8)."""
    from diffusers.models.autoencoders.autoencoder_kl_qwenimage import AutoencoderKLQwenImage
    from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel
    from diffusers.pipelines.qwenimage.pipeline_qwenimage import QwenImagePipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_parts.qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    torch.manual_seed(seed + 2)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|im_start|>"),
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    pipe = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.QWEN_IMAGE,),
    pipelines={
        Task.TEXT2IMG: "QwenImagePipeline",
        Task.IMG2IMG: "QwenImageImg2ImgPipeline",
        Task.INPAINT: "QwenImageInpaintPipeline",
    },
    control_pipelines={
        Task.TEXT2IMG: "QwenImageControlNetPipeline",
        Task.INPAINT: "QwenImageControlNetInpaintPipeline",
    },
    controlnet_class="QwenImageControlNetModel",
    multi_controlnet_class="diffusers.models.controlnets.controlnet_qwenimage.QwenImageMultiControlNetModel",
    control_image_arg="control_image",
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="QwenImageTransformer2DModel",
    large_text_encoders=("text_encoder",),
    call_kwargs=call_kwargs,
    tiny=tiny,
)
