"""The model catalog: which checkpoints a deployment serves, read from ``models.toml``.

Pure data (no torch): the bot lists models and computes sizes from it, the GPU worker
loads pipelines from it. Example ``models.toml`` (relative paths are relative to the
file)::

    default = "dreamshaper"

    [models.dreamshaper]
    family = "sd15"
    path = "/srv/models/dreamshaper-8"          # a local diffusers folder
    steps = 25
    cfg = 7.0
    sampler = "DPM++ 2M Karras"
    clip_skip = 2
    upscaler = "/srv/models/4x-ultrasharp.safetensors"

    [[models.dreamshaper.loras]]
    name = "pixel-art"
    path = "loras/pixel-art.safetensors"
    sha256 = "9f2c..."                           # optional pin, checked before loading
    weight = 0.8

    [models.juggernaut]
    family = "sdxl"
    file = "/srv/models/juggernaut-xl.safetensors" # one single-file checkpoint ...
    config = "/srv/models/sdxl-config"            # ... with a local diffusers config folder
    sha256 = "41ab..."

    [models.turbo]
    family = "sdxl-turbo"
    hub = "stabilityai/sdxl-turbo"                # downloads: only because it is configured
    revision = "main"

Each model has exactly one source: ``path`` (a local diffusers folder), ``file`` (a single
``.safetensors`` checkpoint; ``config`` names the local diffusers folder that describes
its layout) or ``hub`` (a Hugging Face id). Pickle formats (``.ckpt``, ``.bin``, ``.pt``,
``.pth``) are refused everywhere. Unset defaults come from the family
(:mod:`core.families`).

Built-in models (:data:`BUILTIN_MODELS`) are always in the catalog and live in
``<data_dir>/models/<name>``; the worker writes them there on first use. To add one,
append a :class:`BuiltinModel` to :data:`BUILTIN_MODELS` and register how to write it in
``gpu_worker.registry.BUILTIN_WRITERS``.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.families import FAMILY_DEFAULTS, ModelDefaults, ModelFamily


class ModelConfigError(ValueError):
    """A problem in ``models.toml``; the message names the file, the model and the key."""


class SourceKind(enum.StrEnum):
    """Where a model's weights come from."""

    FOLDER = "folder"
    """A local diffusers folder (``model_index.json`` + ``.safetensors``)."""
    SINGLE_FILE = "single_file"
    """One ``.safetensors`` checkpoint plus a local diffusers config folder."""
    HUB = "hub"
    """A Hugging Face hub id; the only source that may download."""
    BUILTIN = "builtin"
    """A model the project writes itself into the data folder on first use."""


PICKLE_SUFFIXES = frozenset({".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle"})
"""File suffixes of pickle-based formats, which can run code when loaded."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where to load a model from (exactly one kind of source)."""

    kind: SourceKind
    location: str
    """The folder or file path, the hub id, or the built-in's folder."""
    config: Path | None = None
    """For a single file: the local diffusers folder describing its layout."""
    sha256: str | None = None
    """For a single file: the expected sha256 (lower-case hex) of its bytes."""
    revision: str | None = None
    """For a hub id: the branch, tag or commit to load."""

    @property
    def path(self) -> Path:
        """The local path of a folder, single-file or built-in source."""
        if self.kind is SourceKind.HUB:
            raise ValueError(f"hub source {self.location!r} has no local path")
        return Path(self.location)


@dataclass(frozen=True, slots=True)
class LoraEntry:
    """A LoRA a model offers, referenced by name from prompts (``<lora:name:w>``)."""

    name: str
    path: Path
    sha256: str | None = None
    weight: float = 1.0
    """The weight the bot uses when a prompt names the LoRA without one."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One servable model: its source, family, render defaults, LoRAs and upscaler."""

    name: str
    family: ModelFamily
    source: ModelSource
    defaults: ModelDefaults
    loras: tuple[LoraEntry, ...] = ()
    upscaler: Path | None = None
    """Optional super-resolution model (``.safetensors``) used for the resize step of upscales."""
    upscaler_sha256: str | None = None
    description: str = ""

    def lora(self, name: str) -> LoraEntry:
        """The LoRA called ``name`` (case-insensitive).

        Raises:
            KeyError: with a message listing the LoRAs the model offers.
        """
        for entry in self.loras:
            if entry.name.lower() == name.lower():
                return entry
        offered = ", ".join(e.name for e in self.loras) or "none"
        raise KeyError(f"model {self.name!r} has no LoRA {name!r} (available: {offered})")


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """A model the project ships: it needs no ``models.toml`` entry and no download."""

    name: str
    family: ModelFamily
    defaults: ModelDefaults
    description: str = ""


BUILTIN_MODELS: list[BuiltinModel] = [
    BuiltinModel(
        name="shapes",
        family=ModelFamily.SD15,
        # Trained by the project (gpu_worker/training) at 64x64 and at the 16-pixel-step
        # sizes of 5:3, 4:3 and their portraits: 16x16 latents (VAE factor 4) through a UNet
        # with two downsamplings, hence sides in steps of 16. Its own scheduler (DPM-Solver++
        # 2M, v-prediction, trailing spacing) at 20 steps and CFG 3 scored best
        # (bench/model_quality.py; CFG 5 and above lose colour accuracy).
        defaults=ModelDefaults(pixel_budget=64 * 64, size_step=16, steps=20, cfg=3.0, sampler=None),
        description="the project's own small model: flat shapes in named colours, sizes and places (64x64)",
    ),
    BuiltinModel(
        name="tiny",
        family=ModelFamily.SD15,
        # The tiny UNet's native size is 64x64 (32x32 latents, VAE factor 2); sides stay
        # multiples of 16 so the latent side is divisible by the UNet's downsampling.
        defaults=ModelDefaults(pixel_budget=64 * 64, size_step=16, steps=4, cfg=7.0, sampler="Euler"),
        description="random weights, offline; draws noise (the fastest model, for tests)",
    ),
]
"""Models that are always in the catalog; the first is the default when ``models.toml`` names none.
Extend with :class:`BuiltinModel` entries."""


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """The models a deployment serves, by name (built-ins first, then ``models.toml``)."""

    entries: tuple[ModelEntry, ...]
    default_name: str
    source_file: Path | None = None
    _by_name: dict[str, ModelEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name.lower(): e for e in self.entries})
        if self.default_name.lower() not in self._by_name:
            raise ModelConfigError(f"default model {self.default_name!r} is not in the catalog")

    def get(self, name: str | None) -> ModelEntry:
        """The entry called ``name`` (case-insensitive); None means the default model.

        Raises:
            KeyError: with a message listing the available models.
        """
        if name is None:
            return self.default
        found = self._by_name.get(name.lower())
        if found is None:
            raise KeyError(f"unknown model {name!r}; available: {', '.join(self.names())}")
        return found

    @property
    def default(self) -> ModelEntry:
        """The model used when a prompt names none."""
        return self._by_name[self.default_name.lower()]

    def names(self) -> list[str]:
        """Model names in catalog order."""
        return [e.name for e in self.entries]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def builtin_entries(data_dir: Path, builtins: Iterable[BuiltinModel] | None = None) -> list[ModelEntry]:
    """Catalog entries of the built-in models, living in ``data_dir/models/<name>``."""
    return [
        ModelEntry(
            name=b.name,
            family=b.family,
            source=ModelSource(SourceKind.BUILTIN, str(data_dir / "models" / b.name)),
            defaults=b.defaults,
            description=b.description,
        )
        for b in (BUILTIN_MODELS if builtins is None else builtins)
    ]


def refuse_pickle(path: Path, what: str) -> None:
    """Raise :class:`ModelConfigError` if ``path`` names a pickle-based format.

    Args:
        path: the file to check (by suffix; the file need not exist).
        what: how the error message names the file (``"model 'x' file"``).
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelConfigError(
            f"{what} {path} is a pickle format ({path.suffix}), which can run code when loaded; "
            "convert it to .safetensors"
        )


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
    "loras",
    "upscaler",
    "upscaler_sha256",
    "description",
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
        entries.append(_parse_model(name, table, base_dir, f"{where}: model {name!r}"))
        reserved.add(name.lower())
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
    defaults = replace(base, **overrides)
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

    upscaler_raw = _typed(table, "upscaler", str, where)
    upscaler = _safetensors_file(upscaler_raw, base_dir, f"{where}: upscaler") if upscaler_raw else None
    return ModelEntry(
        name=name,
        family=family,
        source=source,
        defaults=defaults,
        loras=tuple(loras),
        upscaler=upscaler,
        upscaler_sha256=_sha256(table, "upscaler_sha256", where),
        description=_typed(table, "description", str, where) or "",
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
