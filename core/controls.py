"""ControlNet settings: the ``--cn`` types, a model entry's ControlNets, and what a job may ask.

A model entry in ``models.toml`` names one ControlNet per type it offers (local diffusers
folders, ``.safetensors`` weights), and optionally a depth estimator for ``--cn depth``::

    [models.dreamshaper]
    controlnets = { canny = "/srv/cn/sd15-canny", depth = "/srv/cn/sd15-depth", tile = "cn/tile" }
    depth_estimator = "/srv/models/dpt-hybrid"    # any transformers depth-estimation folder
    pose_estimator = "/srv/models/vitpose-base"   # a transformers VitPose folder

The worker makes the control map from the member's picture (:mod:`gpu_worker.control`):
``canny``, ``lineart``, ``scribble`` and ``tile`` need no weights; ``depth`` and ``pose``
need the entry's estimator (``pose_estimator``: a ``transformers`` VitPose folder); a map
made elsewhere is given with ``:asis``.
The built-in ``shapes`` model ships a canny ControlNet trained on its own pictures.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

CONTROL_TYPES: tuple[str, ...] = ("canny", "lineart", "scribble", "tile", "depth", "pose")
"""Every ``--cn`` type."""
MADE_BY_ESTIMATOR: dict[str, str] = {"depth": "depth_estimator", "pose": "pose_estimator"}
"""Types whose map a model makes (the ``models.toml`` key that names it)."""


@dataclass(frozen=True, slots=True)
class ControlNetEntry:
    """One ControlNet of a model entry."""

    kind: str
    location: str
    """A local diffusers folder, or (``builtin``) a folder inside the built-in model's."""
    builtin: bool = False


class ControlConfigError(ValueError):
    """A ``controlnets``, ``depth_estimator`` or ``pose_estimator`` setting that cannot be used."""


def parse_controlnets(raw: object, base_dir: Path, where: str) -> tuple[ControlNetEntry, ...]:
    """Read a model entry's ``controlnets`` table (type -> folder).

    Raises:
        ControlConfigError: not a table, an unknown type, or a folder without ``config.json``.
    """
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ControlConfigError(f"{where}: 'controlnets' must be a table of type = folder, got {raw!r}")
    entries = []
    for kind, value in raw.items():
        if kind not in CONTROL_TYPES:
            raise ControlConfigError(
                f"{where}: 'controlnets' has an unknown type {kind!r} (types: {', '.join(CONTROL_TYPES)})"
            )
        if not isinstance(value, str) or not value.strip():
            raise ControlConfigError(f"{where}: 'controlnets' {kind!r} must be a folder path")
        folder = _local(value, base_dir)
        if not (folder / "config.json").is_file():
            raise ControlConfigError(f"{where}: 'controlnets' {kind!r} folder {folder} has no config.json")
        entries.append(ControlNetEntry(kind, str(folder)))
    return tuple(entries)


def parse_estimator(raw: object, base_dir: Path, where: str, key: str) -> Path | None:
    """Read a model entry's ``depth_estimator`` or ``pose_estimator`` (a local ``transformers`` folder)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ControlConfigError(f"{where}: {key!r} must be a folder path")
    folder = _local(raw, base_dir)
    if not (folder / "config.json").is_file():
        raise ControlConfigError(f"{where}: {key!r} folder {folder} has no config.json")
    return folder


def _local(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def control_refusal(
    *,
    model: str,
    family_title: str,
    family_has_controlnet: bool,
    offered: Sequence[ControlNetEntry],
    estimators: Collection[str],
    controls: Sequence[tuple[str, bool]],
    max_controls: int = 3,
) -> str | None:
    """Why a job's ``--cn`` controls cannot run on a model (None when they can).

    Args:
        estimators: the ``--cn`` types the model has an estimator for (``depth``, ``pose``).
        controls: each control's type and whether its map is given as it is.
        max_controls: how many the family's pipelines take at once.
    """
    if not controls:
        return None
    if not family_has_controlnet:
        return (
            f"`{model}` is a {family_title} model, which has no ControlNet pipelines, so `--cn` cannot apply"
        )
    if len(controls) > max_controls:
        return f"`{model}` is a {family_title} model, whose ControlNet pipelines take {max_controls} `--cn` at a time"
    kinds = {entry.kind for entry in offered}
    for kind, as_is in controls:
        if kind not in kinds:
            have = ", ".join(f"`{k}`" for k in sorted(kinds)) or "none"
            return f"`{model}` has no `{kind}` ControlNet (it has: {have})"
        if as_is:
            continue
        if kind in MADE_BY_ESTIMATOR and kind not in estimators:
            return (
                f"`{model}` has no {kind} estimator (`{MADE_BY_ESTIMATOR[kind]}` in models.toml) to make a "
                f"{kind} map; give a ready map with `--cn {kind}:asis`"
            )
    return None
