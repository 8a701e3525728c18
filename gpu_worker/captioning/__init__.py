"""Captioners for ``/describe``: load the one a model entry names and read a picture with it.

A captioner is anything with ``describe(image, *, count, seed) -> list[str]`` (plain texts,
best first); :func:`describe_image` turns its texts into prompts of the project's grammar
(:func:`core.captioners.as_prompts`). Two kinds exist:

- :class:`~gpu_worker.captioning.shapes.ShapesCaptioner`, the built-in ``shapes`` model's own
  reader, recognised by ``model_type`` in its folder's ``config.json``;
- :class:`~gpu_worker.captioning.vision_text.VisionTextCaptioner`, any image-to-text model
  that ``transformers`` loads (BLIP, Florence-2, GIT...), from a local folder or the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from core.captioners import DESCRIPTIONS, CaptionerKind, CaptionerSource, as_prompts
from core.models import ModelEntry


class Captioner(Protocol):
    def describe(self, image: Image.Image, *, count: int, seed: int) -> list[str]:  # pragma: no cover
        ...


class CaptionerMissing(LookupError):
    """The model entry names no captioner."""


def captioner_folder(entry: ModelEntry) -> Path | None:
    """The local folder of a model's captioner (None for a hub id).

    Raises:
        CaptionerMissing: the entry has no captioner.
    """
    source = entry.captioner
    if source is None:
        raise CaptionerMissing(f"model {entry.name!r} has no captioner, so it cannot describe images")
    if source.kind is CaptionerKind.BUILTIN:
        return _builtin_folder(entry, source.location)
    if source.kind is CaptionerKind.PATH:
        return Path(source.location)
    return None


def _builtin_folder(entry: ModelEntry, name: str) -> Path:
    """A built-in model's captioner folder: shipped inside the model's folder (``shapes``), or
    written beside the model's weights the first time it is needed (``tiny``; a folder written
    before the model had a captioner gets one then)."""
    from gpu_worker.registry import ensure_builtin

    folder = ensure_builtin(entry) / name
    if (folder / "config.json").is_file():
        return folder
    if entry.name != "tiny":
        raise OSError(f"built-in model {entry.name!r} is missing its captioner; reinstall imaginarium")
    from gpu_worker.captioning.vision_text import write_tiny_captioner
    from gpu_worker.folders import write_folder_once

    return write_folder_once(folder, write_tiny_captioner)


def load_captioner(entry: ModelEntry, *, device: Any = None) -> Captioner:
    """Load the captioner a model entry names (see the module docstring).

    Raises:
        CaptionerMissing: the entry has no captioner.
        OSError / ValueError: the folder or hub id does not hold a usable captioner.
    """
    folder = captioner_folder(entry)
    source: CaptionerSource = entry.captioner  # type: ignore[assignment]  # checked above
    if folder is not None:
        config = json.loads((folder / "config.json").read_text())
        from gpu_worker.captioning.shapes import MODEL_TYPE, ShapesCaptioner

        if config.get("model_type") == MODEL_TYPE:
            return ShapesCaptioner.load(folder)
    from gpu_worker.captioning.vision_text import VisionTextCaptioner

    return VisionTextCaptioner.load(
        str(folder) if folder is not None else source.location,
        revision=source.revision,
        prompt=source.prompt,
        device=device,
    )


def describe_image(
    captioner: Captioner, image: Image.Image, *, seed: int, count: int = DESCRIPTIONS
) -> list[str]:
    """Up to ``count`` distinct prompts for ``image`` (each with the picture's ``--ar``).

    The captioner is asked for twice as many texts as needed, since some may say the same
    thing once cleaned.
    """
    texts = captioner.describe(image, count=count * 2, seed=seed)
    return as_prompts(texts, image.width, image.height, count=count)
