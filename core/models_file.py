"""Reading ``models.toml`` into a :class:`~core.models.ModelCatalog` (see :mod:`core.models`
for the file's format); every mistake is a :class:`~core.models.ModelConfigError` that names
the file, the model and the key.

Longer than 400 lines on purpose: one reader for one file format, each key checked where it
is read, so that every message can name the key it is about."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.captioners import CaptionerConfigError, parse_captioner
from core.controls import ControlConfigError, parse_controlnets, parse_estimator
from core.families import FAMILY_DEFAULTS, ModelFamily
from core.families import family as family_record
from core.models import (
    COMPILE_MODES,
    DTYPES,
    MAX_BATCH_JOBS,
    MAX_BATCH_WINDOW_MS,
    OFFLOADS,
    QUANTIZE,
    LoraEntry,
    MemoryOptions,
    ModelCatalog,
    ModelConfigError,
    ModelEntry,
    ModelSource,
    SourceKind,
    SpeedOptions,
    builtin_entries,
    refuse_pickle,
)
from core.references import ReferenceConfigError, parse_adapter


def load_catalog(path: str | Path | None = None, *, data_dir: str | Path | None = None) -> ModelCatalog:
    """Read ``models.toml`` into a :class:`ModelCatalog`, built-in models included.

    Args:
        path: the TOML file; None gives the built-in models only.
        data_dir: where built-in models live (``<data_dir>/models/<name>``); None uses the
            ``IMAGINARIUM_DATA_DIR`` setting.

    Returns:
        The catalog. Its default is the file's ``default`` key, else the file's first model,
        else the first built-in model.

    Raises:
        ModelConfigError: the file is missing or invalid; the message says where and why.
    """
    if data_dir is None:
        from core.settings import get_settings

        data_dir = get_settings().data_dir
    entries = builtin_entries(Path(data_dir))
    if path is None:
        return ModelCatalog(tuple(entries), entries[0].name)

    file = Path(path)
    try:
        with file.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ModelConfigError(f"models file not found: {file}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{file} is not valid TOML: {exc}") from None
    return parse_catalog(raw, base_dir=file.parent, builtins=entries, source_file=file)


MAX_HOUSE_STYLE_CHARS = 1000
"""Longest ``style_prompt`` / ``negative_prompt`` a model may add to its jobs."""
_TOP_KEYS = {"default", "models"}
_MODEL_KEYS = {
    "family",
    "path",
    "file",
    "config",
    "hub",
    "revision",
    "sha256",
    "pixel_budget",
    "size_step",
    "steps",
    "cfg",
    "sampler",
    "clip_skip",
    "lora_learning_rate",
    "style_prompt",
    "negative_prompt",
    "loras",
    "upscaler",
    "upscaler_sha256",
    "description",
    "aliases",
    "dtype",
    "offload",
    "vae_tiling",
    "vae_slicing",
    "quantize",
    "quantize_text_encoders",
    "denoiser",
    "denoiser_sha256",
    "attention",
    "compile",
    "channels_last",
    "batch_jobs",
    "batch_window_ms",
    "preview_vae",
    "captioner",
    "controlnets",
    "depth_estimator",
    "pose_estimator",
    "style_adapter",
    "character_adapter",
}
_LORA_KEYS = {"name", "path", "sha256", "weight"}


def parse_catalog(
    raw: Mapping[str, Any],
    *,
    base_dir: Path,
    builtins: list[ModelEntry],
    source_file: Path | None = None,
) -> ModelCatalog:
    """Validate parsed ``models.toml`` data (see :func:`load_catalog`).

    Raises:
        ModelConfigError: on the first problem found.
    """
    where = str(source_file) if source_file else "models.toml"
    _no_unknown_keys(raw, _TOP_KEYS, where)
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ModelConfigError(f"{where}: 'models' must be a table of [models.NAME] sections")
    reserved = {b.name.lower() for b in builtins}
    entries = list(builtins)
    for name, table in models.items():
        if name.lower() in reserved:
            raise ModelConfigError(f"{where}: model name {name!r} is reserved for a built-in model")
        if not isinstance(table, dict):
            raise ModelConfigError(f"{where}: [models.{name}] must be a table")
        entry = _parse_model(name, table, base_dir, f"{where}: model {name!r}")
        entries.append(entry)
        reserved.add(name.lower())
    taken = {e.name.lower(): e.name for e in entries}
    for entry in entries:
        for alias in entry.aliases:
            if alias.lower() in taken:
                raise ModelConfigError(
                    f"{where}: model {entry.name!r}: alias {alias!r} is already the name or an alias of "
                    f"model {taken[alias.lower()]!r}"
                )
            taken[alias.lower()] = entry.name
    default = raw.get("default")
    if default is None:
        default = entries[len(builtins)].name if len(entries) > len(builtins) else entries[0].name
    if not isinstance(default, str) or default.lower() not in {e.name.lower() for e in entries}:
        names = ", ".join(e.name for e in entries)
        raise ModelConfigError(f"{where}: default model {default!r} is not defined (models: {names})")
    return ModelCatalog(tuple(entries), default, source_file)


def _no_unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ModelConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _typed(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table.get(key)
    if value is None:
        return None
    # TOML booleans are ints to Python; no setting here is a boolean.
    if isinstance(value, bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        noun = (
            "a number"
            if float in kinds
            else {int: "an integer", str: "a string"}.get(kinds[0], kinds[0].__name__)
        )
        raise ModelConfigError(f"{where}: {key!r} must be {noun}, got {value!r}")
    return value


def _local_path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _sha256(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _typed(table, key, str, where)
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelConfigError(f"{where}: {key!r} must be 64 hex digits (a sha256), got {value!r}")
    return digest


def _safetensors_file(value: str, base_dir: Path, what: str) -> Path:
    path = _local_path(value, base_dir)
    refuse_pickle(path, what)
    if path.suffix.lower() != ".safetensors":
        raise ModelConfigError(f"{what} {path} must be a .safetensors file")
    if not path.is_file():
        raise ModelConfigError(f"{what} {path} does not exist")
    return path


def _parse_model(name: str, table: Mapping[str, Any], base_dir: Path, where: str) -> ModelEntry:
    _no_unknown_keys(table, _MODEL_KEYS, where)
    family_raw = _typed(table, "family", str, where)
    if family_raw is None:
        raise ModelConfigError(f"{where}: 'family' is required ({', '.join(f.value for f in ModelFamily)})")
    try:
        family = ModelFamily(family_raw.lower())
    except ValueError:
        raise ModelConfigError(
            f"{where}: unknown family {family_raw!r}; expected one of {', '.join(f.value for f in ModelFamily)}"
        ) from None

    given = [k for k in ("path", "file", "hub") if k in table]
    if len(given) != 1:
        raise ModelConfigError(
            f"{where}: give exactly one source: 'path' (diffusers folder), 'file' (.safetensors) "
            f"or 'hub' (hub id); got {', '.join(given) or 'none'}"
        )
    source = _parse_source(given[0], table, base_dir, where)

    base = FAMILY_DEFAULTS[family]
    overrides: dict[str, Any] = {}
    for key, kind in (("pixel_budget", int), ("size_step", int), ("steps", int), ("clip_skip", int)):
        value = _typed(table, key, kind, where)
        if value is not None:
            if value <= 0:
                raise ModelConfigError(f"{where}: {key!r} must be positive, got {value}")
            overrides[key] = value
    cfg = _typed(table, "cfg", (int, float), where)
    if cfg is not None:
        if cfg < 0:
            raise ModelConfigError(f"{where}: 'cfg' must not be negative, got {cfg}")
        overrides["cfg"] = float(cfg)
    sampler = _typed(table, "sampler", str, where)
    if sampler is not None:
        overrides["sampler"] = sampler
    rate = _typed(table, "lora_learning_rate", (int, float), where)
    if rate is not None:
        if not 0 < rate <= 0.1:
            raise ModelConfigError(f"{where}: 'lora_learning_rate' must be above 0 and at most 0.1, got {rate}")
        overrides["lora_learning_rate"] = float(rate)
    for key in ("style_prompt", "negative_prompt"):
        value = _typed(table, key, str, where)
        if value is not None:
            if len(value) > MAX_HOUSE_STYLE_CHARS:
                raise ModelConfigError(f"{where}: {key!r} is longer than {MAX_HOUSE_STYLE_CHARS} characters")
            overrides[key] = " ".join(value.split()).strip(" ,")
    defaults = replace(base, **overrides)
    if defaults.negative_prompt and not family_record(family).negative_prompt:
        raise ModelConfigError(f"{where}: {family.value} models take no negative prompt; remove 'negative_prompt'")
    if 20 * defaults.size_step**2 > 21 * defaults.pixel_budget:
        raise ModelConfigError(f"{where}: 'pixel_budget' is smaller than one size_step x size_step square")

    loras_raw = table.get("loras", [])
    if not isinstance(loras_raw, list) or not all(isinstance(t, dict) for t in loras_raw):
        raise ModelConfigError(f"{where}: 'loras' must be a list of [[models.{name}.loras]] tables")
    loras: list[LoraEntry] = []
    for i, lt in enumerate(loras_raw):
        lwhere = f"{where} LoRA #{i + 1}"
        _no_unknown_keys(lt, _LORA_KEYS, lwhere)
        lname = _typed(lt, "name", str, lwhere)
        lpath = _typed(lt, "path", str, lwhere)
        if not lname or not lpath:
            raise ModelConfigError(f"{lwhere}: 'name' and 'path' are required")
        if any(existing.name.lower() == lname.lower() for existing in loras):
            raise ModelConfigError(f"{lwhere}: duplicate LoRA name {lname!r}")
        weight = _typed(lt, "weight", (int, float), lwhere)
        loras.append(
            LoraEntry(
                name=lname,
                path=_safetensors_file(lpath, base_dir, f"{where}: LoRA {lname!r} file"),
                sha256=_sha256(lt, "sha256", lwhere),
                weight=1.0 if weight is None else float(weight),
            )
        )

    preview_raw = _typed(table, "preview_vae", str, where)
    preview_vae = None
    if preview_raw:
        preview_vae = _local_path(preview_raw, base_dir)
        if not (preview_vae / "config.json").is_file():
            raise ModelConfigError(f"{where}: 'preview_vae' {preview_vae} is not a diffusers folder (no config.json)")
        for found in preview_vae.iterdir():
            refuse_pickle(found, f"{where}: 'preview_vae' file")

    denoiser = None
    denoiser_raw = _typed(table, "denoiser", str, where)
    if denoiser_raw:
        denoiser = _local_path(denoiser_raw, base_dir)
        refuse_pickle(denoiser, f"{where}: 'denoiser'")
        if denoiser.suffix.lower() not in (".gguf", ".safetensors"):
            raise ModelConfigError(f"{where}: 'denoiser' {denoiser} must be a .gguf or .safetensors file")
        if not denoiser.is_file():
            raise ModelConfigError(f"{where}: 'denoiser' {denoiser} does not exist")
    memory = _memory(table, where)
    gguf = denoiser is not None and denoiser.suffix.lower() == ".gguf"
    if gguf and memory.quantize != "none" and not memory.quantize_text_encoders:
        raise ModelConfigError(
            f"{where}: a .gguf denoiser is quantised by its file, so 'quantize' has nothing to do "
            "(remove it, or add 'quantize_text_encoders = true' for the text encoders)"
        )
    if memory.quantize_text_encoders and memory.quantize == "none":
        raise ModelConfigError(f"{where}: 'quantize_text_encoders' needs 'quantize' (int8, int4, fp8 or nf4)")
    if "denoiser_sha256" in table and denoiser is None:
        raise ModelConfigError(f"{where}: 'denoiser_sha256' without a 'denoiser' file")

    upscaler_raw = _typed(table, "upscaler", str, where)
    upscaler = _safetensors_file(upscaler_raw, base_dir, f"{where}: upscaler") if upscaler_raw else None
    try:
        captioner = parse_captioner(table.get("captioner"), base_dir, where)
        controlnets = parse_controlnets(table.get("controlnets"), base_dir, where)
        depth_estimator = parse_estimator(table.get("depth_estimator"), base_dir, where, "depth_estimator")
        pose_estimator = parse_estimator(table.get("pose_estimator"), base_dir, where, "pose_estimator")
        style_adapter = parse_adapter(table.get("style_adapter"), base_dir, where, "style_adapter")
        character_adapter = parse_adapter(table.get("character_adapter"), base_dir, where, "character_adapter")
    except (CaptionerConfigError, ControlConfigError, ReferenceConfigError) as exc:
        raise ModelConfigError(str(exc)) from None
    return ModelEntry(
        name=name,
        family=family,
        source=source,
        defaults=defaults,
        loras=tuple(loras),
        upscaler=upscaler,
        upscaler_sha256=_sha256(table, "upscaler_sha256", where),
        description=_typed(table, "description", str, where) or "",
        aliases=_aliases(table, where),
        memory=memory,
        speed=_speed(table, where),
        denoiser=denoiser,
        denoiser_sha256=_sha256(table, "denoiser_sha256", where),
        preview_vae=preview_vae,
        captioner=captioner,
        controlnets=controlnets,
        depth_estimator=depth_estimator,
        pose_estimator=pose_estimator,
        style_adapter=style_adapter,
        character_adapter=character_adapter,
    )


def _parse_source(kind: str, table: Mapping[str, Any], base_dir: Path, where: str) -> ModelSource:
    value = _typed(table, kind, str, where)
    if not value:
        raise ModelConfigError(f"{where}: {kind!r} must not be empty")
    sha = _sha256(table, "sha256", where)
    if kind != "file" and (sha is not None or "config" in table):
        raise ModelConfigError(f"{where}: 'sha256' and 'config' apply to a single 'file' source only")
    if kind != "hub" and "revision" in table:
        raise ModelConfigError(f"{where}: 'revision' applies to a 'hub' source only")

    if kind == "hub":
        return ModelSource(SourceKind.HUB, value, revision=_typed(table, "revision", str, where))
    if kind == "path":
        folder = _local_path(value, base_dir)
        refuse_pickle(folder, f"{where}: path")
        if not folder.is_dir():
            raise ModelConfigError(f"{where}: diffusers folder {folder} does not exist")
        if not (folder / "model_index.json").is_file():
            raise ModelConfigError(
                f"{where}: {folder} is not a diffusers folder (no model_index.json); "
                "for a single checkpoint use 'file' and 'config'"
            )
        return ModelSource(SourceKind.FOLDER, str(folder))

    file = _safetensors_file(value, base_dir, f"{where}: file")
    config_raw = _typed(table, "config", str, where)
    if not config_raw:
        raise ModelConfigError(
            f"{where}: a single-file checkpoint needs 'config', a local diffusers folder describing "
            "its layout (nothing is downloaded to guess it)"
        )
    config = _local_path(config_raw, base_dir)
    if not config.is_dir():
        raise ModelConfigError(f"{where}: config folder {config} does not exist")
    return ModelSource(SourceKind.SINGLE_FILE, str(file), config=config, sha256=sha)


_ALIAS = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def _aliases(table: Mapping[str, Any], where: str) -> tuple[str, ...]:
    raw = table.get("aliases", [])
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise ModelConfigError(f"{where}: 'aliases' must be a list of names, e.g. [\"v7\", \"niji6\"]")
    aliases = tuple(a.strip().lower() for a in raw)
    for alias in aliases:
        if not _ALIAS.fullmatch(alias):
            raise ModelConfigError(f"{where}: alias {alias!r} must be letters, digits, '.', '_' and '-' (up to 64)")
    return aliases


def _memory(table: Mapping[str, Any], where: str) -> MemoryOptions:
    options: dict[str, Any] = {}
    for key, allowed in (("dtype", DTYPES), ("offload", OFFLOADS), ("quantize", QUANTIZE)):
        value = _typed(table, key, str, where)
        if value is not None:
            if value.lower() not in allowed:
                raise ModelConfigError(f"{where}: {key!r} must be one of {', '.join(allowed)}, got {value!r}")
            options[key] = value.lower()
    for key in ("vae_tiling", "vae_slicing", "quantize_text_encoders"):
        value = table.get(key)
        if value is not None:
            if not isinstance(value, bool):
                raise ModelConfigError(f"{where}: {key!r} must be true or false, got {value!r}")
            options[key] = value
    return MemoryOptions(**options)


_ATTENTION = re.compile(r"[a-z0-9_]{1,64}")


def _speed(table: Mapping[str, Any], where: str) -> SpeedOptions:
    options: dict[str, Any] = {}
    attention = _typed(table, "attention", str, where)
    if attention is not None:
        attention = attention.lower()
        if not _ATTENTION.fullmatch(attention):
            raise ModelConfigError(f"{where}: 'attention' must be a diffusers attention backend name, got {attention!r}")
        if attention.endswith("_hub"):
            raise ModelConfigError(
                f"{where}: attention backend {attention!r} downloads its kernels from the hub; "
                "install the kernel package and use the backend without '_hub'"
            )
        options["attention"] = attention
    mode = _typed(table, "compile", str, where)
    if mode is not None:
        if mode.lower() not in COMPILE_MODES:
            raise ModelConfigError(f"{where}: 'compile' must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
        options["compile"] = mode.lower()
    channels_last = table.get("channels_last")
    if channels_last is not None:
        if not isinstance(channels_last, bool):
            raise ModelConfigError(f"{where}: 'channels_last' must be true or false, got {channels_last!r}")
        options["channels_last"] = channels_last
    for key, low, high in (("batch_jobs", 1, MAX_BATCH_JOBS), ("batch_window_ms", 0, MAX_BATCH_WINDOW_MS)):
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ModelConfigError(f"{where}: {key!r} must be a whole number from {low} to {high}, got {value!r}")
        options[key] = value
    return SpeedOptions(**options)
