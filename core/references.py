"""Style and character references (``--sref``/``--sw``, ``--cref``/``--cw``): settings and weights.

A model entry may name an IP-Adapter for each kind of reference (a ``.safetensors`` adapter
and the CLIP image encoder it was trained with, both local, the adapter optionally pinned by
sha256 like a LoRA)::

    [models.dreamshaper]
    style_adapter = { path = "/srv/ip-adapter/models", weight_name = "ip-adapter_sd15.safetensors",
                      image_encoder = "/srv/ip-adapter/models/image_encoder", sha256 = "…" }
    character_adapter = { path = "/srv/ip-adapter/models", weight_name = "ip-adapter-plus-face_sd15.safetensors",
                          image_encoder = "/srv/ip-adapter/models/image_encoder" }

With an adapter the reference pictures condition the render through it, at a scale from
``--sw`` / ``--cw`` (:func:`style_scale`, :func:`character_scale`); a model with a style
adapter reads plain image prompts through it too (what the picture shows, not its pixels,
at :func:`image_prompt_scale` of ``--iw``) instead of starting from them. A model without one
still takes the flag: its references become image prompts (the render starts from the
first one, as ``--iw`` would), and the image's recipe says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STYLE_WEIGHT_MAX = 1000
CHARACTER_WEIGHT_MAX = 100
MAX_REFERENCES = 3
"""Pictures per kind of reference."""


@dataclass(frozen=True, slots=True)
class AdapterEntry:
    """One IP-Adapter of a model entry."""

    folder: Path
    weight_name: str
    image_encoder: Path
    sha256: str | None = None

    @property
    def file(self) -> Path:
        return self.folder / self.weight_name


class ReferenceConfigError(ValueError):
    """A ``style_adapter`` / ``character_adapter`` setting that cannot be used."""


def parse_adapter(raw: object, base_dir: Path, where: str, key: str) -> AdapterEntry | None:
    """Read a ``style_adapter`` or ``character_adapter`` table.

    Raises:
        ReferenceConfigError: a missing key or file, or a pickle format.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ReferenceConfigError(
            f"{where}: {key!r} must be a table with path, weight_name and image_encoder"
        )
    unknown = sorted(set(raw) - {"path", "weight_name", "image_encoder", "sha256"})
    if unknown:
        raise ReferenceConfigError(f"{where}: {key!r} has an unknown key {unknown[0]!r}")
    values = {}
    for name in ("path", "weight_name", "image_encoder"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ReferenceConfigError(f"{where}: {key!r} needs {name!r} (a string)")
        values[name] = value.strip()
    folder = _local(values["path"], base_dir)
    if not values["weight_name"].endswith(".safetensors"):
        raise ReferenceConfigError(f"{where}: {key!r} 'weight_name' must be a .safetensors file (no pickles)")
    if not (folder / values["weight_name"]).is_file():
        raise ReferenceConfigError(f"{where}: {key!r} file {folder / values['weight_name']} does not exist")
    encoder = _local(values["image_encoder"], base_dir)
    if not (encoder / "config.json").is_file():
        raise ReferenceConfigError(f"{where}: {key!r} image encoder folder {encoder} has no config.json")
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha.strip()) != 64):
        raise ReferenceConfigError(f"{where}: {key!r} 'sha256' must be 64 hex digits")
    return AdapterEntry(folder, values["weight_name"], encoder, sha.strip().lower() if sha else None)


def _local(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def style_scale(style_weight: int) -> float:
    """IP-Adapter scale of ``--sw`` (0-1000, default 100): 0.6 at 100, growing with its square
    root, at most 1.5 (beyond that an adapter copies the picture rather than its style)."""
    return min(1.5, 0.6 * (max(0, style_weight) / 100) ** 0.5)


def character_scale(character_weight: int) -> float:
    """IP-Adapter scale of ``--cw`` (0-100, default 100): 0.3 at 0 (mostly the face) to 0.9 at
    100 (face, hair and clothes)."""
    return 0.3 + 0.6 * min(max(character_weight, 0), 100) / 100


def image_prompt_scale(image_weight: float | None) -> float:
    """IP-Adapter scale of image prompts (``--iw`` 0-3, default 1) on a model whose style
    adapter reads them: 0.6 at 1, at most 1.5."""
    return min(1.5, 0.6 * (1.0 if image_weight is None else image_weight))


def fallback_image_weight(weight: int, top: int) -> float:
    """``--iw`` a reference weighs as an image prompt on a model without an adapter: 1 at the
    default weight, 0.25 at 0, 2 at the top of its range."""
    share = min(max(weight, 0), top) / top
    default = 100 / top
    if share <= default:
        return 0.25 + 0.75 * share / default if default else 1.0
    return 1.0 + (share - default) / (1 - default)
