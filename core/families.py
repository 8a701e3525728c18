"""Model families: what the bot and the catalog know of an architecture, without torch.

A :class:`Family` says what a family's checkpoints are called in ``models.toml``, their render
defaults (pixel budget, size step, steps, guidance, sampler) and which pipeline tasks the
family can run (text-to-image, image-to-image, inpainting). The bot refuses a job whose
recipe needs a task the model's family lacks before anything is charged
(:func:`Family.supports`). Everything that needs torch and diffusers (pipeline classes, text
encoders and prompt weighting, latent previews, a tiny random-weights pipeline for tests)
is the family's adapter in ``gpu_worker/families/``.

Adding a family: one member of :class:`ModelFamily` and one :class:`Family` below, and one
adapter module in ``gpu_worker/families/``; ``tests/gpu_worker/test_families.py`` checks
that every family has an adapter that agrees with its record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from core.samplers import FLOW_SAMPLER_NAMES, SAMPLER_NAMES
from core.sizes import size_for_aspect


class ModelFamily(enum.StrEnum):
    """The architecture a checkpoint belongs to; it decides the pipeline classes and defaults."""

    SD15 = "sd15"
    """Stable Diffusion 1.x (512x512, one CLIP text encoder)."""
    SDXL = "sdxl"
    """Stable Diffusion XL (1024x1024, two CLIP text encoders)."""
    SD_TURBO = "sd-turbo"
    """SD 2.1 distilled to 1-4 steps without guidance (512x512)."""
    SDXL_TURBO = "sdxl-turbo"
    """SDXL distilled to 1-4 steps without guidance (512x512)."""
    FLUX = "flux"
    """FLUX.1 (flow matching, T5 + CLIP text encoders, 1024x1024)."""
    SD3 = "sd3"
    """Stable Diffusion 3 and 3.5 (flow matching, two CLIP and a T5 text encoder, 1024x1024)."""
    Z_IMAGE = "z-image"
    """Z-Image and Z-Image-Turbo (single-stream DiT, flow matching, a Qwen3 text encoder, 1024x1024)."""
    FLUX2 = "flux2"
    """FLUX.2 [klein] (flow matching, a Qwen3 text encoder, 1024x1024; no image-to-image)."""
    FLUX2_DEV = "flux2-dev"
    """FLUX.2 [dev] (flow matching, a Mistral Small 3 text encoder, guidance distilled into the
    transformer, 1024x1024; edits pictures it is given as references)."""
    QWEN_IMAGE = "qwen-image"
    """Qwen-Image (MMDiT, flow matching, a Qwen2.5-VL text encoder, 1328x1328)."""
    FLUX_KONTEXT = "flux-kontext"
    """FLUX.1 Kontext (FLUX.1's parts, trained to edit a picture by instruction)."""


class Task(enum.StrEnum):
    """A kind of pipeline call; a job's recipe needs one (:attr:`core.kinds.Recipe.task`)."""

    TEXT2IMG = "text2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    EDIT = "edit"
    """Change a picture as an instruction says (``/edit`` without a mask): editing models only."""


ALL_TASKS = frozenset({Task.TEXT2IMG, Task.IMG2IMG, Task.INPAINT})
"""The tasks of a family unless its record says otherwise (instruction edits are not among them)."""


@dataclass(frozen=True, slots=True)
class ModelDefaults:
    """Render settings a model works best with; a spec's own values win."""

    pixel_budget: int
    """Pixels per image (width x height) the model was trained at."""
    size_step: int
    """Image sides are multiples of this."""
    steps: int
    """Denoising steps."""
    cfg: float
    """Classifier-free guidance scale (1.0 or less: guidance off)."""
    sampler: str | None
    """A1111 sampler name, or None for the model's own scheduler."""
    clip_skip: int | None = None
    """A1111-style clip skip (None: the family's usual layer)."""
    style_prompt: str = ""
    """The model's house style: words added to every prompt part (``masterpiece, detailed``),
    unless the prompt says ``--style raw``."""
    negative_prompt: str = ""
    """A negative prompt added to every job's own, unless the prompt says ``--style raw``."""
    lora_learning_rate: float = 1e-4
    """The denoiser's learning rate when ``/train`` trains a LoRA on the model (its text
    encoder's is a quarter of it): diffusers' DreamBooth-LoRA examples use 1e-4 on SD 1.5 and
    SDXL; a small model learns at more (``lora_learning_rate`` in ``models.toml``)."""

    @property
    def has_house_style(self) -> bool:
        return bool(self.style_prompt or self.negative_prompt)

    def size_for(self, aspect_ratio: tuple[int, int]) -> tuple[int, int]:
        """The ``(width, height)`` for an aspect ratio at this model's pixel budget and step."""
        return size_for_aspect(*aspect_ratio, pixel_budget=self.pixel_budget, step=self.size_step)


@dataclass(frozen=True, slots=True)
class Family:
    """One model family as the bot and the catalog see it."""

    key: ModelFamily
    title: str
    defaults: ModelDefaults
    """Used for every setting a ``models.toml`` entry leaves out."""
    tasks: frozenset[Task] = ALL_TASKS
    samplers: tuple[str, ...] = SAMPLER_NAMES
    """The ``--sampler`` names its models can use (A1111 spelling)."""
    clip_skip: bool = True
    """Whether ``--clip-skip`` applies (its prompts go through CLIP encoders that have layers to skip)."""
    weights: bool = True
    """Whether multi-prompt weights (``a::2 b::1``, negative ones included) apply: the parts'
    embeddings are blended by weight. Families whose language-model encoders give each
    prompt a sequence of its own length cannot blend them; they refuse weights."""

    controlnet: bool = True
    """Whether ``--cn`` runs on it: its adapter names ControlNet pipelines
    (``gpu_worker/families/``). Families without them yet refuse ``--cn`` before charging."""
    max_controls: int = 3
    """How many ``--cn`` controls its pipelines take at once (diffusers' Qwen-Image runs one)."""
    trains_loras: bool = False
    """Whether ``/train`` can train a LoRA on its models (:mod:`gpu_worker.lora_training`
    trains UNet models with CLIP text encoders); others refuse it before charging."""
    negative_prompt: bool = True
    """Whether its pipelines take a negative prompt (``--no``); a family whose guidance is
    distilled into the model has none to give, and refuses ``--no`` before charging."""

    def supports(self, task: Task | str) -> bool:
        return Task(task) in self.tasks


FAMILIES: tuple[Family, ...] = (
    Family(
        ModelFamily.SD15, "Stable Diffusion 1.5", ModelDefaults(512 * 512, 64, 25, 7.0, "DPM++ 2M Karras"),
        trains_loras=True,
    ),
    Family(
        ModelFamily.SDXL, "Stable Diffusion XL", ModelDefaults(1024 * 1024, 64, 30, 6.0, "DPM++ 2M Karras"),
        trains_loras=True,
    ),
    Family(ModelFamily.SD_TURBO, "SD Turbo", ModelDefaults(512 * 512, 64, 2, 0.0, "Euler a")),
    Family(ModelFamily.SDXL_TURBO, "SDXL Turbo", ModelDefaults(512 * 512, 64, 2, 0.0, "Euler a")),
    Family(
        ModelFamily.SD3,
        "Stable Diffusion 3.5",
        ModelDefaults(1024 * 1024, 16, 28, 4.5, None),
        samplers=FLOW_SAMPLER_NAMES,
    ),
    Family(
        ModelFamily.FLUX,
        "FLUX.1",
        ModelDefaults(1024 * 1024, 16, 28, 3.5, None),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
    ),
    Family(
        ModelFamily.FLUX_KONTEXT,
        "FLUX.1 Kontext",
        ModelDefaults(1024 * 1024, 16, 28, 2.5, None),
        tasks=frozenset({Task.TEXT2IMG, Task.EDIT}),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
        controlnet=False,
    ),
    Family(
        ModelFamily.Z_IMAGE,
        "Z-Image",
        # Z-Image-Turbo's settings (8 transformer passes, no guidance); an entry for the
        # undistilled Z-Image sets steps = 50 and cfg = 4.
        ModelDefaults(1024 * 1024, 16, 9, 0.0, None),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
        weights=False,
        max_controls=1,
    ),
    Family(
        ModelFamily.FLUX2,
        "FLUX.2 [klein]",
        # The distilled klein's settings (4 steps, no guidance); an entry for the base klein
        # sets steps = 50 and cfg = 4.
        ModelDefaults(1024 * 1024, 16, 4, 1.0, None),
        tasks=frozenset({Task.TEXT2IMG, Task.INPAINT}),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
        weights=False,
        controlnet=False,
    ),
    Family(
        ModelFamily.FLUX2_DEV,
        "FLUX.2 [dev]",
        ModelDefaults(1024 * 1024, 16, 50, 4.0, None),
        tasks=frozenset({Task.TEXT2IMG, Task.EDIT}),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
        weights=False,
        controlnet=False,
        negative_prompt=False,
    ),
    Family(
        ModelFamily.QWEN_IMAGE,
        "Qwen-Image",
        ModelDefaults(1328 * 1328, 16, 50, 4.0, None),
        samplers=FLOW_SAMPLER_NAMES,
        clip_skip=False,
        weights=False,
        max_controls=1,
    ),
)

_BY_KEY: dict[ModelFamily, Family] = {f.key: f for f in FAMILIES}

FAMILY_DEFAULTS: Mapping[ModelFamily, ModelDefaults] = {f.key: f.defaults for f in FAMILIES}
"""Defaults per family, used for every setting a model entry leaves out."""


def family(key: ModelFamily | str) -> Family:
    """The record of a family.

    Raises:
        ValueError: an unknown family name.
    """
    return _BY_KEY[ModelFamily(key)]
