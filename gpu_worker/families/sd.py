"""Stable Diffusion 1.x and 2.x (and SD Turbo): one CLIP text encoder, a 4-channel latent space."""

from __future__ import annotations

import torch

from core.families import ModelFamily, Task
from gpu_worker.families import tiny_parts
from gpu_worker.families.base import Adapter, LatentPreview, PromptStyle


def tiny(seed: int = 0) -> object:
    """A ``StableDiffusionPipeline`` of small random weights (64x64 images, VAE factor 2)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = tiny_parts.tokenizer()
    # One seed before each component, so a change in one component's size never shifts the
    # weights of the others.
    torch.manual_seed(seed)
    unet = tiny_parts.unet(cross_attention_dim=32)
    torch.manual_seed(seed + 1)
    vae = tiny_parts.vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(tiny_parts.text_config(len(tokenizer)))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=tiny_parts.scheduler(),
        # diffusers annotates these as required but documents None as "not used";
        # moderation is the worker's own step, not the pipeline's.
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        image_encoder=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )
    return tiny_parts.inference_mode(pipe)


ADAPTER = Adapter(
    families=(ModelFamily.SD15, ModelFamily.SD_TURBO),
    pipelines={
        Task.TEXT2IMG: "StableDiffusionPipeline",
        Task.IMG2IMG: "StableDiffusionImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionInpaintPipeline",
    },
    prompt_style=PromptStyle.CLIP,
    control_pipelines={
        Task.TEXT2IMG: "StableDiffusionControlNetPipeline",
        Task.IMG2IMG: "StableDiffusionControlNetImg2ImgPipeline",
        Task.INPAINT: "StableDiffusionControlNetInpaintPipeline",
    },
    preview=LatentPreview(
        "sd",
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        ),
    ),
    # The SD 1.x pipelines carry a safety checker; moderation is the worker's own step.
    load_kwargs={"safety_checker": None, "requires_safety_checker": False},
    tiny=tiny,
)
