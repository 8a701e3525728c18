"""What a model family's adapter holds: everything the worker must know of an architecture.

An :class:`Adapter` names the family's diffusers pipeline class for each task it supports,
how its prompts are encoded and weighted (:class:`PromptStyle`), the linear latent-to-RGB
projection of its progress previews, extra arguments its pipelines load with, and how to
build a tiny pipeline of its real classes with random weights for tests. The record the bot
sees (defaults, supported tasks) is :class:`core.families.Family`.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.families import ModelFamily, Task


class PromptStyle(enum.Enum):
    """How :mod:`gpu_worker.prompting` builds a family's text conditioning."""

    CLIP = "one CLIP text encoder"
    """SD 1.x/2.x: A1111 weighting on one encoder's hidden states."""
    CLIP_PAIR = "two CLIP text encoders and a pooled embedding"
    """SDXL: both encoders' penultimate states concatenated, the second's pooled output."""
    PLAIN = "the pipeline's own prompt encoding"
    """Families whose encoders the weighting does not cover (T5 and others): the pipeline
    gets the prompt text; attention syntax is stripped, multi-prompts joined."""


@dataclass(frozen=True, slots=True)
class LatentPreview:
    """A linear projection of latents to RGB for cheap progress previews."""

    key: str
    """A short name for the latent space (families may share one)."""
    factors: tuple[tuple[float, float, float], ...]
    """One RGB row per latent channel, applied to latents as the sampler holds them."""
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Adapter:
    """One family's worker-side knowledge (see the module docstring)."""

    families: tuple[ModelFamily, ...]
    """The :class:`~core.families.ModelFamily` keys this adapter serves (same architecture)."""
    pipelines: Mapping[Task, str]
    """diffusers pipeline class names by task; a task not here is not supported."""
    prompt_style: PromptStyle
    denoiser: str = "unet"
    """The pipeline component that denoises (``unet`` or ``transformer``): where LoRAs go."""
    denoiser_class: str = "UNet2DConditionModel"
    """The diffusers class of :attr:`denoiser` (a ``denoiser`` file in models.toml loads as it)."""
    large_text_encoders: tuple[str, ...] = ()
    """Components that are language models (T5, Qwen...), which ``quantize_text_encoders``
    quantises; CLIP encoders are small and not listed."""
    preview: LatentPreview | None = None
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for ``from_pretrained`` / ``from_single_file``."""
    encode_text: Callable[[Any, str, int | None], dict[str, Any]] | None = None
    """``encode_text(pipe, text, clip_skip)``: one text's positive prompt embeddings, as the
    pipeline's keyword arguments (``prompt_embeds``, ``pooled_prompt_embeds``), batch 1; for
    families whose prompts :mod:`gpu_worker.prompting` cannot weight itself, so that weighted
    multi-prompts can be blended."""
    call_kwargs: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    """``call_kwargs(pipe, call)``: a render call's keyword arguments (built in the terms most
    pipelines share: ``guidance_scale``, ``negative_prompt``...) in those of the family's."""
    tiny: Callable[[int], Any] | None = None
    """``tiny(seed)``: a pipeline of the family's real classes with small random weights."""
    control_pipelines: Mapping[Task, str] = field(default_factory=dict)
    """diffusers ControlNet pipeline class names by task (``--cn``); none: the family refuses
    ``--cn`` (:attr:`core.families.Family.controlnet` says the same to the bot)."""
    controlnet_class: str = "ControlNetModel"
    """The diffusers class its ControlNet folders load as."""
    multi_controlnet_class: str = "diffusers.models.controlnets.multicontrolnet.MultiControlNetModel"
    """The class that runs several of its ControlNets at once (module path and name)."""
    controlnet_shares_transformer: bool = False
    """Its ControlNets borrow the transformer's embedders (``from_transformer(net, transformer)``
    after loading: Z-Image)."""
    control_image_arg: str = "image"
    """The argument its text-to-image ControlNet pipeline takes the maps as (its image-to-image
    and inpainting ones take ``control_image``)."""

    def pipeline_class(self, task: Task | str = Task.TEXT2IMG) -> Any:
        """The diffusers class of ``task`` (imported on first use).

        Raises:
            ValueError: the family has no pipeline for ``task``.
        """
        name = self.pipelines.get(Task(task))
        if name is None:
            raise ValueError(f"{self.families[0].value} models have no {Task(task).value} pipeline")
        return getattr(importlib.import_module("diffusers"), name)

    def runs(self, pipe: Any) -> bool:
        """Whether ``pipe`` is one of this family's pipelines (by class), ControlNet ones included."""
        name = type(pipe).__name__
        return name in self.pipelines.values() or name in self.control_pipelines.values()

    def task_of(self, pipe: Any) -> Task | None:
        """The task ``pipe``'s class does, if it is one of this family's (a ControlNet pipeline's
        task is that of the plain pipeline it stands in for)."""
        name = type(pipe).__name__
        return next(
            (task for table in (self.pipelines, self.control_pipelines) for task, cls in table.items() if cls == name),
            None,
        )
