"""FLUX.1 Kontext: FLUX.1's parts, trained to change a picture as an instruction says.

Its pipeline takes the picture as ``image`` (a reference the transformer reads beside the
latents, not a starting point) and the instruction as the prompt; without a picture it
draws from the prompt alone. Prompt handling, previews and guidance are FLUX.1's.
"""

from __future__ import annotations

from typing import Any

from core.families import ModelFamily, Task
from gpu_worker.families import flux
from gpu_worker.families.base import Adapter, PromptStyle


def call_kwargs(pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
    """FLUX.1's call, rendered at the job's size: the pipeline otherwise rescales every render
    to ``max_area`` (1024x1024) and snaps the picture to its preferred resolutions."""
    out = flux.call_kwargs(pipe, call)
    if "width" in out and "height" in out:
        out["max_area"] = int(out["width"]) * int(out["height"])
        out["_auto_resize"] = False
    return out


def tiny(seed: int = 0) -> object:
    """A ``FluxKontextPipeline`` of the tiny FLUX.1 pipeline's parts (random weights)."""
    from diffusers import FluxKontextPipeline

    base = flux.tiny(seed)
    return FluxKontextPipeline(**base.components)  # type: ignore[attr-defined]


ADAPTER = Adapter(
    families=(ModelFamily.FLUX_KONTEXT,),
    pipelines={Task.TEXT2IMG: "FluxKontextPipeline", Task.EDIT: "FluxKontextPipeline"},
    prompt_style=PromptStyle.PLAIN,
    denoiser="transformer",
    denoiser_class="FluxTransformer2DModel",
    large_text_encoders=("text_encoder_2",),
    preview=flux.FLUX1_PREVIEW,
    encode_text=flux.encode_text,
    call_kwargs=call_kwargs,
    tiny=tiny,
)
