"""Grids and PNG files with generation parameters in AUTOMATIC1111's format.

A1111 writes a ``parameters`` text chunk into each PNG, and many tools (A1111's "PNG
Info", ComfyUI, Civitai, image browsers) read it back::

    a red fox in the snow
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: tiny

The last line is ``key: value`` pairs separated by ``", "``; a value containing a comma, a
colon or a quote is written as a JSON string.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from PIL import Image, PngImagePlugin

from core.spec import JobSpec
from gpu_worker.ops.common import RenderSettings

PARAMETERS_KEY = "parameters"
"""The PNG text chunk A1111 stores generation parameters in."""

_NEGATIVE = "Negative prompt: "
# One "key: value" pair of the settings line; values are bare up to the next comma, or a
# JSON string (A1111's own pattern).
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SETTINGS_LINE = re.compile(r"^(?:\w[\w \-/]+: [^\n]*)$")


def compose_grid(images: Sequence[Image.Image], *, columns: int = 2) -> Image.Image:
    """Tile images into a grid (2x2 for a job's four), row by row in the given order.

    Args:
        images: images of one size.
        columns: images per row.

    Returns:
        An RGB image of ``columns x rows`` cells.

    Raises:
        ValueError: no images, or images of different sizes.
    """
    if not images:
        raise ValueError("a grid needs at least one image")
    size = images[0].size
    if any(im.size != size for im in images):
        raise ValueError(f"grid images must share one size, got {sorted({im.size for im in images})}")
    cols = min(columns, len(images))
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (size[0] * cols, size[1] * rows))
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((i % cols) * size[0], (i // cols) * size[1]))
    return grid


def _format_value(value: object) -> str:
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else f"{value:g}"
    else:
        text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text)
    return text


def format_parameters(prompt: str, negative_prompt: str, settings: Mapping[str, object]) -> str:
    """The A1111 ``parameters`` text for a prompt, a negative prompt and ordered settings."""
    lines = [prompt]
    if negative_prompt:
        lines.append(_NEGATIVE + negative_prompt)
    lines.append(
        ", ".join(f"{key}: {_format_value(value)}" for key, value in settings.items() if value is not None)
    )
    return "\n".join(lines)


def parameters_for(
    spec: JobSpec,
    settings: RenderSettings,
    *,
    seed: int,
    model: str,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The ``parameters`` text of one rendered image.

    Args:
        spec: the job (prompt and negative prompt as written).
        settings: what the render resolved (steps, sampler, guidance, size).
        seed: this image's seed.
        model: the model name.
        extra: further settings appended to the line (``Clip skip``, ``Chaos``, ...).
    """
    values: dict[str, object] = {
        "Steps": settings.steps,
        "Sampler": settings.sampler,
        "CFG scale": float(settings.cfg),
        "Seed": seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model": model,
    }
    if spec.clip_skip:
        values["Clip skip"] = spec.clip_skip
    values.update(extra or {})
    return format_parameters(spec.prompt, spec.negative_prompt, values)


@dataclass(frozen=True, slots=True)
class GenerationParameters:
    """Parameters read back from an A1111 ``parameters`` text."""

    prompt: str
    negative_prompt: str = ""
    settings: dict[str, str] = field(default_factory=dict)


def parse_parameters(text: str) -> GenerationParameters:
    """Split an A1111 ``parameters`` text into prompt, negative prompt and settings.

    Values are strings as written (JSON-quoted ones unquoted); ``Seed``, ``Steps`` and
    friends are left for the caller to convert.
    """
    lines = text.strip("\n").split("\n")
    settings: dict[str, str] = {}
    if lines and _SETTINGS_LINE.match(lines[-1]) and len(_PAIR.findall(lines[-1])) >= 1:
        for key, value in _PAIR.findall(lines.pop()):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            settings[key.strip()] = value
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith(_NEGATIVE) and target is prompt_lines:
            target = negative_lines
            line = line[len(_NEGATIVE) :]
        target.append(line)
    return GenerationParameters("\n".join(prompt_lines), "\n".join(negative_lines), settings)


def encode_png(image: Image.Image, parameters: str | None = None) -> bytes:
    """PNG bytes of ``image``, with ``parameters`` in A1111's text chunk when given."""
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        # iTXt (UTF-8) rather than tEXt (Latin-1): prompts are often not Latin-1.
        info.add_itxt(PARAMETERS_KEY, parameters)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_parameters(data: bytes | Image.Image) -> str | None:
    """The A1111 ``parameters`` text of a PNG (bytes or an opened image), if it has one."""
    image = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else data
    value = image.info.get(PARAMETERS_KEY)
    if value is None and hasattr(image, "text"):
        value = image.text.get(PARAMETERS_KEY)
    return str(value) if value is not None else None
