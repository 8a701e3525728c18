"""Captioners: what ``/describe`` reads a picture with, one per model entry.

A model entry in ``models.toml`` may name a captioner, an image-to-text model that
``transformers`` loads (BLIP, Florence-2, GIT, or any other ``AutoModelForImageTextToText``
class), in one of two forms::

    [models.dreamshaper]
    captioner = "/srv/models/blip-large"          # a local folder (config + .safetensors)

    [models.juggernaut]
    captioner = { hub = "Salesforce/blip-image-captioning-large", revision = "main" }
    # also: path = "...", prompt = "<MORE_DETAILED_CAPTION>" (a task prompt, for Florence-2)

``/describe`` on a model without one is refused before anything is charged, naming the
model. The built-in ``shapes`` model ships its own captioner (a classifier trained on the
model's own kind of pictures, ``gpu_worker/captioning/shapes.py``), so ``/describe`` works
offline on the embedded default.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.sizes import aspect_of

MAX_CAPTIONER_PROMPT = 200
"""Longest task prompt a captioner entry may set."""

DESCRIPTIONS = 4
"""How many prompts ``/describe`` offers (Midjourney's four)."""


class CaptionerKind(enum.StrEnum):
    PATH = "path"
    """A local folder that ``transformers`` loads (``.safetensors`` weights only)."""
    HUB = "hub"
    """A Hugging Face id: downloaded once, only because the operator configured it."""
    BUILTIN = "builtin"
    """The ``captioner/`` folder of a built-in model (written with the model)."""


@dataclass(frozen=True, slots=True)
class CaptionerSource:
    """Where a model's captioner comes from, and how to ask it."""

    kind: CaptionerKind
    location: str
    """The folder, the hub id, or (built-in) the model's folder name inside the model."""
    revision: str | None = None
    prompt: str | None = None
    """A text prompt the captioner expects with the image (Florence-2's task tokens); none for BLIP."""


class CaptionerConfigError(ValueError):
    """A ``captioner`` setting that cannot be used; the message names the key."""


def parse_captioner(raw: object, base_dir: Path, where: str) -> CaptionerSource | None:
    """Read a model entry's ``captioner`` value (see the module docstring).

    Args:
        raw: the value in the file (a string, a table, or None when absent).
        base_dir: where relative paths start (the file's folder).
        where: how messages name the entry.

    Raises:
        CaptionerConfigError: a malformed value, or a local folder that does not exist.
    """
    if raw is None:
        return None
    table: Mapping[str, Any] = {"path": raw} if isinstance(raw, str) else raw if isinstance(raw, dict) else {}
    if not table:
        raise CaptionerConfigError(
            f"{where}: 'captioner' must be a folder path or a table with 'path' or 'hub', got {raw!r}"
        )
    unknown = sorted(set(table) - {"path", "hub", "revision", "prompt"})
    if unknown:
        raise CaptionerConfigError(
            f"{where}: 'captioner' has an unknown key {unknown[0]!r} (allowed: hub, path, prompt, revision)"
        )
    for key in ("path", "hub", "revision", "prompt"):
        if key in table and (not isinstance(table[key], str) or not table[key].strip()):
            raise CaptionerConfigError(f"{where}: 'captioner' {key!r} must be a non-empty string")
    if ("path" in table) == ("hub" in table):
        raise CaptionerConfigError(f"{where}: 'captioner' needs exactly one of 'path' and 'hub'")
    prompt = table.get("prompt")
    if prompt is not None and len(prompt) > MAX_CAPTIONER_PROMPT:
        raise CaptionerConfigError(
            f"{where}: 'captioner' 'prompt' is longer than {MAX_CAPTIONER_PROMPT} characters"
        )
    if "hub" in table:
        return CaptionerSource(
            CaptionerKind.HUB, table["hub"].strip(), revision=table.get("revision"), prompt=prompt
        )
    if "revision" in table:
        raise CaptionerConfigError(f"{where}: 'captioner' 'revision' applies to a 'hub' captioner only")
    path = Path(table["path"]).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not (path / "config.json").is_file():
        raise CaptionerConfigError(f"{where}: 'captioner' folder {path} has no config.json")
    return CaptionerSource(CaptionerKind.PATH, str(path), prompt=prompt)


_FLAG_DASHES = re.compile(r"(?:^|(?<=\s))[-—–]{1,}(?=\S)|[-—–]{2,}")
_SPECIAL = re.compile(r"::|<\s*lora\s*:|[{}<>|`*_~@#\[\]]", re.IGNORECASE)
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
MAX_DESCRIPTION_CHARS = 300
"""A description is cut at a word boundary before this many characters."""


def as_prompt(caption: str, width: int, height: int) -> str | None:
    """A captioner's text as a prompt in the project's grammar, or None when nothing is left.

    What the grammar would read as more than words is taken out (flag dashes, ``::``
    weights, ``{a, b}`` permutations, LoRA tags, links, Markdown), whitespace is collapsed,
    the text is cut at a word before :data:`MAX_DESCRIPTION_CHARS`, and ``--ar`` with the
    picture's plain ratio is added unless it is square (:func:`core.sizes.aspect_of`).
    """
    text = _URL.sub(" ", caption)
    text = _SPECIAL.sub(" ", text)
    text = _FLAG_DASHES.sub(" ", text)
    text = " ".join(text.split()).strip(" ,.;:")
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[:MAX_DESCRIPTION_CHARS].rsplit(" ", 1)[0].rstrip(" ,.;:")
    if not any(ch.isalnum() for ch in text):
        return None
    a, b = aspect_of(width, height)
    return text if (a, b) == (1, 1) else f"{text} --ar {a}:{b}"


def as_prompts(captions: list[str], width: int, height: int, *, count: int = DESCRIPTIONS) -> list[str]:
    """Up to ``count`` distinct prompts (:func:`as_prompt`) from a captioner's texts, in order."""
    prompts: list[str] = []
    seen: set[str] = set()
    for caption in captions:
        prompt = as_prompt(caption, width, height)
        if prompt is None or prompt.lower() in seen:
            continue
        seen.add(prompt.lower())
        prompts.append(prompt)
        if len(prompts) == count:
            break
    return prompts
