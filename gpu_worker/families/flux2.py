"""FLUX.2 [klein]: a flow-matching transformer, a Qwen3 language model as text encoder
(three of its layers' states stacked), the FLUX.2 VAE, latents packed 2x2.

Text to image and inpainting (its pipelines take an ``image`` as a *reference* to edit from,
not as a start to re-noise, so image-to-image jobs are refused by the family record). Its
pipelines always guide against an empty prompt: a job's ``--no`` text is encoded here and
passed as the negative embeddings (:func:`call_kwargs`). Like Z-Image, each prompt's
embedding has its own length, so ``::`` weights are refused.
"""

from __future__ import annotations

from typing import Any

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, PromptStyle


def call_kwargs(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The render call in FLUX.2 [klein]'s terms: the negative prompt as embeddings."""
    out = dict(call)
    negative = out.pop("negative_prompt", None)
    if negative is not None and out.get("guidance_scale", 0.0) > 1.0 and not pipe.config.get("is_distilled"):
        texts = [negative] if isinstance(negative, str) else list(negative)
        with torch.inference_mode():
            embeds, _ids = pipe.encode_prompt(prompt=texts, num_images_per_prompt=1)
        out["negative_prompt_embeds"] = embeds
    return out


def tiny(seed: int = 0) -> object:
    """A ``Flux2KleinPipeline`` of small random weights (the sizes of diffusers' own tests;
    the Qwen3 model has 28 thin layers so that the layers the pipeline reads exist), with
    the offline Qwen tokenizer and a one-level VAE (sides in steps of 2)."""
    from diffusers.models.autoencoders.autoencoder_kl_flux2 import AutoencoderKLFlux2
    from diffusers.models.transformers.transformer_flux2 import Flux2Transformer2DModel
    from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import Qwen3ForCausalLM

    tokenizer = tiny_parts.qwen_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=False,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    torch.manual_seed(seed + 2)
    text_encoder = Qwen3ForCausalLM(tiny_parts.qwen3_config(tokenizer, layers=28, max_positions=1024))
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.FLUX2,),
    pipelines={Task.TEXT2IMG: "Flux2KleinPipeline", Task.INPAINT: "Flux2KleinInpaintPipeline"},
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="Flux2Transformer2DModel",
    large_text_encoders=("text_encoder",),
    call_kwargs=call_kwargs,
    tiny=tiny,
)
