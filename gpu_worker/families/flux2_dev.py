"""FLUX.2 [dev]: FLUX.2's flow-matching transformer and VAE with a Mistral Small 3 language model
as text encoder (three of its layers' states stacked) and guidance distilled into the
transformer (``guidance_scale`` is an input of the model, not two passes).

Text to image, and edits: its pipeline reads pictures it is given as references beside the
latents (the ``edit`` task, as FLUX.1 Kontext's). It has no negative prompt (the family record
refuses ``--no`` before charging; a job that carries one anyway is rejected here, never
rendered as if it had none), and, like FLUX.2 [klein], each prompt's embedding has its own
length, so ``::`` weights are refused.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from core.families import ModelFamily, Task
from gpu_worker.failures import JobRejected
from gpu_worker.families import flux2, tiny_parts
from gpu_worker.families.base import Adapter, PromptStyle

MIN_REFERENCE_SIDE = 64
"""The pipeline refuses reference pictures with a side under this many pixels."""


def call_kwargs(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """The render call in FLUX.2 [dev]'s terms: no negative prompt; a reference picture made
    at least :data:`MIN_REFERENCE_SIDE` pixels on its shorter side."""
    out = dict(call)
    if out.pop("negative_prompt", None):
        raise JobRejected("FLUX.2 [dev] takes no negative prompt (--no); say what you want instead")
    reference = out.get("image")
    if isinstance(reference, Image.Image) and min(reference.size) < MIN_REFERENCE_SIDE:
        scale = MIN_REFERENCE_SIDE / min(reference.size)
        size = (round(reference.width * scale), round(reference.height * scale))
        out["image"] = reference.resize(size, Image.Resampling.LANCZOS)
    return out


def tiny(seed: int = 0) -> object:
    """A ``Flux2Pipeline`` of small random weights: FLUX.2 [klein]'s tiny transformer (with a
    guidance embedding) and VAE, a Mistral3 model of 31 thin text layers and the offline
    tokenizer laid out as Mistral's."""
    from diffusers.models.transformers.transformer_flux2 import Flux2Transformer2DModel
    from diffusers.pipelines.flux2.pipeline_flux2 import Flux2Pipeline
    from transformers import Mistral3ForConditionalGeneration

    base: Any = flux2.tiny(seed)
    tokenizer = tiny_parts.mistral_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(**{**base.transformer.config, "guidance_embeds": True})
    torch.manual_seed(seed + 2)
    text_encoder = Mistral3ForConditionalGeneration(tiny_parts.mistral3_config(tokenizer, layers=31))
    pipe = Flux2Pipeline(
        scheduler=base.scheduler, vae=base.vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.FLUX2_DEV,),
    pipelines={Task.TEXT2IMG: "Flux2Pipeline", Task.EDIT: "Flux2Pipeline"},
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="Flux2Transformer2DModel",
    large_text_encoders=("text_encoder",),
    call_kwargs=call_kwargs,
    tiny=tiny,
)
