"""The job recipe shared by the bot, the database and the GPU worker.

A :class:`JobSpec` says *what* to render (prompt, size, seed, sampler, ...). What kind of
job runs it (imagine, upscale, variation, ...) and which source image it starts from is
said by :class:`JobKind` and the job row, not by the spec.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class JobKind(enum.StrEnum):
    """What a job does; :mod:`core.kinds` holds each kind's recipes (one per variant)."""

    IMAGINE = "imagine"
    """Four images from a prompt (seeds s..s+3) and their 2x2 grid."""
    UPSCALE = "upscale"
    """One image at twice the size (variant ``subtle`` or ``creative``)."""
    VARIATION = "variation"
    """Four variations of one image (variant ``subtle`` or ``strong``; remix edits the prompt)."""
    REROLL = "reroll"
    """Read from old rows only: a reroll now queues the recipe it rerolls (:func:`core.kinds.reroll_of`)."""
    ZOOM = "zoom"
    """Zoom out by 1.5x or 2x (variant ``1.5``/``2``) or make square (variant ``square``)."""
    PAN = "pan"
    """Extend one image to one side (variant ``left``/``right``/``up``/``down``)."""
    REGION = "region"
    """Repaint a region of one image (variant: a region preset of :mod:`core.kinds`)."""
    BLEND = "blend"
    """Blend 2-5 source images into four new ones."""
    DESCRIBE = "describe"
    """Four prompts read from one image by the model's captioner (no images are made)."""
    EDIT = "edit"
    """Change a member's picture: repaint where their mask is white."""
    TRAIN = "train"
    """Train a LoRA from a member's pictures (``/train``); its images are the LoRA's samples."""


class Lane(enum.StrEnum):
    """Which queue lane a job runs in."""

    FAST = "fast"
    """Costs credits, served first."""
    RELAX = "relax"
    """Free when the server allows it, lower priority."""


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One part of a multi-prompt (``text::weight``); a plain prompt is one part of weight 1."""

    text: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class LoraRef:
    """A LoRA to apply by name, with its weight: one the model's catalog entry offers, or
    (with ``storage_key`` and ``sha256``, filled in by the bot) one a member trained
    (``/train``), fetched by the worker from the image store."""

    name: str
    weight: float = 1.0
    storage_key: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ControlRef:
    """One ``--cn`` control: a ControlNet type, its weight, and whether the picture is used
    as the control map as it is (``asis``) or made into one by the type's preprocessor."""

    kind: str
    weight: float = 1.0
    as_is: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A parsed prompt: everything the worker needs to render it, and nothing Discord-specific.

    ``parts`` keeps the positive prompt as written (A1111 attention syntax such as
    ``(word:1.3)``, ``((word))`` and ``[word]`` is kept verbatim for the worker to apply);
    ``<lora:name:w>`` tags and ``--lora`` flags are moved into ``loras``. ``seed`` is None
    until a job is created (the bot then draws one so the job is reproducible).
    """

    parts: tuple[PromptPart, ...]
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    aspect_ratio: tuple[int, int] = (1, 1)
    seed: int | None = None
    chaos: int = 0
    weird: int = 0
    """``--weird``: the prompt's conditioning moved one seeded random way (all four images)."""
    stylize: int = 100
    steps: int | None = None
    stop: int = 100
    """``--stop``: per cent of the steps after which the render is finished early (softer)."""
    cfg: float | None = None
    sampler: str | None = None
    model: str | None = None
    loras: tuple[LoraRef, ...] = ()
    tile: bool = False
    quality: float = 1.0
    repeat: int = 1
    lane: Lane | None = None
    image_urls: tuple[str, ...] = ()
    image_weight: float | None = None
    clip_skip: int | None = None
    raw: bool = False
    """``--style raw``: leave out the model's house style (its ``style_prompt`` and
    ``negative_prompt``)."""
    style_refs: tuple[str, ...] = ()
    """``--sref``: pictures whose style the images take (:mod:`core.references`)."""
    style_weight: int = 100
    character_refs: tuple[str, ...] = ()
    """``--cref``: pictures of a character the images keep."""
    character_weight: int = 100
    controls: tuple[ControlRef, ...] = ()
    """``--cn``: ControlNets guiding the render; ``image_urls`` are then their pictures (one
    for all, or one each), not image prompts."""
    mask_id: int | None = None
    """Vary (Region) drawn in the web gallery's editor: the ``masks`` row whose white the job
    repaints (not a flag: the editor sets it)."""
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def prompt(self) -> str:
        """The positive prompt text; multi-prompt parts joined with their ``::`` weights."""
        if len(self.parts) == 1 and self.parts[0].weight == 1.0:
            return self.parts[0].text
        return " ".join(f"{p.text}::{_fmt_num(p.weight)}" for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the jobs table and sent to workers)."""
        data = asdict(self)
        data["aspect_ratio"] = list(self.aspect_ratio)
        data["lane"] = self.lane.value if self.lane else None
        data["extra"] = [list(kv) for kv in self.extra]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old rows still load."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["parts"] = tuple(PromptPart(**p) for p in values.get("parts", ()))
        values["loras"] = tuple(LoraRef(**lr) for lr in values.get("loras", ()))
        values["controls"] = tuple(ControlRef(**c) for c in values.get("controls", ()))
        if "aspect_ratio" in values:
            values["aspect_ratio"] = tuple(values["aspect_ratio"])
        if values.get("lane"):
            values["lane"] = Lane(values["lane"])
        for key in ("image_urls", "style_refs", "character_refs"):
            if key in values:
                values[key] = tuple(values[key])
        if "extra" in values:
            values["extra"] = tuple(tuple(kv) for kv in values["extra"])
        return cls(**values)


def _fmt_num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
