"""Loading pipelines and LoRAs for catalog entries, offline unless a hub id is configured.

Every path here reads local ``.safetensors`` files (pickle formats are refused) with
``local_files_only=True``; only a ``hub`` source, which an operator wrote into
``models.toml`` on purpose, may reach the network. Files pinned by sha256 are hashed and
checked *before* any byte of them is deserialized.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import diffusers
import torch
from diffusers.pipelines.auto_pipeline import AutoPipelineForText2Image
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from packaging.version import Version
from safetensors.torch import load_file

from core.families import Task
from core.models import LoraEntry, ModelEntry, SourceKind, refuse_pickle
from gpu_worker.families import adapter
from gpu_worker.memory import (
    QuantizationUnavailable,
    check_quantization,
    load_denoiser,
    pipeline_quantization,
    place,
)
from gpu_worker.speed import SpeedOptionError, apply_speed_options
from gpu_worker.tiny_model import write_tiny_model

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model, LoRA or upscaler could not be loaded; the message says which and why."""


class IntegrityError(ModelLoadError):
    """A file's sha256 does not match the pin in ``models.toml``; it was not loaded."""


# diffusers 0.42 renamed ``torch_dtype`` to ``dtype`` (the old name warns); older releases
# in the supported range know only the old one.
_DTYPE_KWARG = "dtype" if Version(diffusers.__version__).release >= (0, 42) else "torch_dtype"

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "builtin"
"""Trained weights the package ships (``<name>/`` diffusers folders), copied into the data
folder on first use."""
SHIPPED_DIGEST_FILE = ".shipped-sha256"
"""Written into a copied shipped model: the digest of the package folder it came from."""


def shipped_digest(folder: Path) -> str:
    """A sha256 over the names and contents of every file in a shipped model's folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SHIPPED_DIGEST_FILE):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def copy_shipped_model(name: str, out: Path) -> Path:
    """Copy the shipped model ``name`` to ``out`` and mark it with :func:`shipped_digest`.

    Raises:
        ModelLoadError: the package lacks the model's files (a broken install).
    """
    source = SHIPPED_MODELS_DIR / name
    if not (source / "model_index.json").is_file():
        raise ModelLoadError(
            f"built-in model {name!r}: its weights are missing from {source}; reinstall imaginarium"
        )
    shutil.copytree(source, out, ignore=shutil.ignore_patterns(SHIPPED_DIGEST_FILE, "*.png"))
    (out / SHIPPED_DIGEST_FILE).write_text(shipped_digest(source) + "\n")
    return out


BUILTIN_WRITERS: dict[str, Callable[[Path], Path]] = {
    "shapes": lambda out: copy_shipped_model("shapes", out),
    "tiny": lambda out: write_tiny_model(out, "sd15", seed=0),
}
"""How to write each built-in model (``core.models.BUILTIN_MODELS``) into its folder."""


def select_device(prefer: str | None = None) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run pipelines on.

    Args:
        prefer: ``"cuda"``, ``"cpu"`` or None (CUDA when available).

    Returns:
        ``(cuda, float16)`` on a GPU, else ``(cpu, float32)``: half precision is what
        consumer GPUs are fast at, and CPU kernels for float16 are slow or missing.
    """
    if prefer == "cpu" or (prefer is None and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    if not torch.cuda.is_available():
        raise ModelLoadError("CUDA was requested but no CUDA device is available")
    return torch.device(prefer or "cuda"), torch.float16


_hash_lock = threading.Lock()
_hash_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """The sha256 (lower-case hex) of a file's bytes.

    Memoized per (path, size, modification time), so pinned multi-gigabyte checkpoints are
    hashed once per process rather than once per load.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_memo[key] = value
    return value


def check_file(path: Path, sha256: str | None, what: str) -> None:
    """Refuse a file that is a pickle format, missing, or not matching its sha256 pin.

    Args:
        path: the file.
        sha256: the expected digest, or None when the file is not pinned.
        what: how messages name the file (``"LoRA 'pixel'"``).

    Raises:
        ModelLoadError: pickle format or missing file.
        IntegrityError: the digest differs from the pin.
    """
    try:
        refuse_pickle(path, what)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    if not path.is_file():
        raise ModelLoadError(f"{what}: file {path} does not exist")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256.lower():
            raise IntegrityError(
                f"{what}: sha256 of {path} is {actual}, but models.toml pins {sha256.lower()}; refusing to load it"
            )


def _refuse_pickles_in(folder: Path, what: str) -> None:
    # ``use_safetensors=True`` already makes diffusers refuse pickle weights, but a folder
    # that ships *only* pickles deserves a message that says so before anything loads.
    pickles = sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.suffix.lower() in {".bin", ".ckpt", ".pt", ".pth"} and not p.with_suffix(".safetensors").exists()
    )
    weights = list(folder.rglob("*.safetensors"))
    if pickles and not weights:
        raise ModelLoadError(
            f"{what}: {folder} has only pickle weights ({pickles[0]}, ...); convert them to .safetensors"
        )


def ensure_builtin(entry: ModelEntry) -> Path:
    """Write a built-in model into its folder if it is not there yet; return the folder.

    The model is written next to its final place and renamed into it, so a crash or a
    second worker never leaves a half-written folder that looks complete.
    """
    folder = entry.source.path
    if (folder / "model_index.json").is_file() and not _outdated_copy(entry.name, folder):
        return folder
    writer = BUILTIN_WRITERS.get(entry.name)
    if writer is None:
        raise ModelLoadError(f"built-in model {entry.name!r} has no writer in BUILTIN_WRITERS")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{threading.get_ident()}"
    staging = folder.parent / f".{folder.name}.{tag}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    writer(staging)
    if folder.exists():
        # An older copy of shipped weights (the package was upgraded): move it aside first.
        retired = folder.parent / f".{folder.name}.{tag}.old"
        with contextlib.suppress(OSError):
            folder.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:
        # Someone else finished first; theirs is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "model_index.json").is_file():
            raise
    log.info("wrote built-in model %s to %s", entry.name, folder)
    return folder


def _outdated_copy(name: str, folder: Path) -> bool:
    # Only copies of shipped weights can go out of date: written models are pure functions
    # of the code that writes them, which changes their folder's contents only on purpose.
    shipped = SHIPPED_MODELS_DIR / name
    if not (shipped / "model_index.json").is_file():
        return False
    mark = folder / SHIPPED_DIGEST_FILE
    recorded = mark.read_text().strip() if mark.is_file() else ""
    return recorded != shipped_digest(shipped)


def load_pipeline(
    entry: ModelEntry,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> DiffusionPipeline:
    """Load the text-to-image pipeline of a catalog entry.

    Args:
        entry: the model; its source decides how it loads (see ``core.models.SourceKind``).
        device: where to put the pipeline; None picks with :func:`select_device`.
        dtype: weight dtype; None picks with :func:`select_device`.

    Returns:
        The pipeline on ``device``, progress bars off, safety checker off (moderation is a
        separate step of the worker).

    Raises:
        ModelLoadError: missing files, pickle-only weights, or diffusers failing to load.
        IntegrityError: a pinned single-file checkpoint does not match its sha256.
    """
    auto_device, auto_dtype = select_device(None if device is None else str(torch.device(device).type))
    target = torch.device(device) if device is not None else auto_device
    memory = entry.memory
    torch_dtype = dtype or _DTYPES.get(memory.dtype) or auto_dtype
    if memory.offload != "none" and target.type != "cuda":
        raise ModelLoadError(f"model {entry.name!r}: offload = {memory.offload!r} needs a CUDA GPU")
    what = f"model {entry.name!r}"
    source = entry.source
    family = adapter(entry.family)
    try:
        check_quantization(entry, target)
    except QuantizationUnavailable as exc:
        raise ModelLoadError(str(exc)) from None
    if entry.denoiser is not None:
        check_file(entry.denoiser, entry.denoiser_sha256, f"{what}: denoiser")
    common: dict[str, Any] = {_DTYPE_KWARG: torch_dtype, **family.load_kwargs}
    quantization = pipeline_quantization(entry, family, torch_dtype)
    if quantization is not None:
        common["quantization_config"] = quantization
    try:
        if source.kind in (SourceKind.FOLDER, SourceKind.BUILTIN):
            folder = ensure_builtin(entry) if source.kind is SourceKind.BUILTIN else source.path
            if not (folder / "model_index.json").is_file():
                raise ModelLoadError(f"{what}: {folder} is not a diffusers folder (no model_index.json)")
            _refuse_pickles_in(folder, what)
            if entry.denoiser is not None:
                common[family.denoiser] = load_denoiser(entry, family, torch_dtype, str(folder))
            pipe = AutoPipelineForText2Image.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, **common
            )
        elif source.kind is SourceKind.SINGLE_FILE:
            check_file(source.path, source.sha256, what)
            if source.config is None or not source.config.is_dir():
                raise ModelLoadError(f"{what}: single-file checkpoints need a local config folder")
            if entry.denoiser is not None or entry.memory.quantize != "none":
                common[family.denoiser] = load_denoiser(
                    entry, family, torch_dtype, str(source.config), file=entry.denoiser or source.path
                )
            pipe = family.pipeline_class(Task.TEXT2IMG).from_single_file(
                str(source.path), config=str(source.config), local_files_only=True, **common
            )
        else:
            log.info("loading %s from the hub id %s (configured in models.toml)", what, source.location)
            if entry.denoiser is not None:
                common[family.denoiser] = load_denoiser(entry, family, torch_dtype, source.location)
            pipe = AutoPipelineForText2Image.from_pretrained(
                source.location, revision=source.revision, use_safetensors=True, **common
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{what}: loading failed: {exc}") from exc
    if not family.runs(pipe):
        raise ModelLoadError(
            f"{what}: models.toml says family {entry.family.value!r}, but the weights load as "
            f"{type(pipe).__name__}; fix the model's 'family'"
        )
    place(pipe, target, memory)
    pipe.set_progress_bar_config(disable=True)
    try:
        apply_speed_options(pipe, entry, family)
    except SpeedOptionError as exc:
        raise ModelLoadError(str(exc)) from None
    if entry.preview_vae is not None:
        _attach_preview_vae(pipe, entry, target)
    return pipe


def _attach_preview_vae(pipe: DiffusionPipeline, entry: ModelEntry, target: torch.device) -> None:
    """Load the entry's tiny autoencoder and register it to decode the pipeline's previews."""
    from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

    from gpu_worker.progress import attach_preview_decoder

    what = f"model {entry.name!r}: preview_vae"
    assert entry.preview_vae is not None
    _refuse_pickles_in(entry.preview_vae, what)
    try:
        tiny = AutoencoderTiny.from_pretrained(entry.preview_vae, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{what}: loading failed: {exc}") from exc
    vae = cast(Any, pipe).vae
    attach_preview_decoder(vae, tiny.to(device=target, dtype=vae.dtype).eval())


_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def adapter_name(lora: LoraEntry) -> str:
    """The adapter name a LoRA gets inside a pipeline (peft names may not contain dots)."""
    return "lora_" + re.sub(r"[^A-Za-z0-9_]", "_", lora.name.lower())


def load_lora(pipe: DiffusionPipeline, lora: LoraEntry) -> str:
    """Load a LoRA's weights into ``pipe`` as a named adapter (inactive until ``set_adapters``).

    The file is pin-checked and read with ``safetensors`` here, so diffusers never sees a
    path it could resolve on the hub or unpickle.

    Args:
        pipe: a pipeline with LoRA support (SD 1.5, SDXL, FLUX).
        lora: the catalog's LoRA entry.

    Returns:
        The adapter name (:func:`adapter_name`).

    Raises:
        ModelLoadError: pickle format, missing file, a pipeline without LoRA support, or
            weights that do not fit the model.
        IntegrityError: the sha256 pin does not match.
    """
    what = f"LoRA {lora.name!r}"
    check_file(lora.path, lora.sha256, what)
    loader = getattr(pipe, "load_lora_weights", None)
    if loader is None:
        raise ModelLoadError(f"{what}: {type(pipe).__name__} does not support LoRAs")
    name = adapter_name(lora)
    try:
        state_dict = load_file(str(lora.path), device="cpu")
        loader(state_dict, adapter_name=name)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{what}: loading {lora.path} failed: {exc}") from exc
    return name


def module_bytes(pipe: DiffusionPipeline) -> int:
    """Bytes held by a pipeline's parameters and buffers (shared modules counted once)."""
    seen: set[int] = set()
    total = 0
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in (*component.parameters(), *component.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def estimate_entry_bytes(entry: ModelEntry) -> int:
    """A guess of the memory a model takes once loaded, from its weight files on disk.

    Returns 0 when there is nothing local to measure (a hub id, a built-in not yet
    written); the cache then measures the pipeline after loading.
    """
    if entry.source.kind is SourceKind.HUB:
        return 0
    path = entry.source.path
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*.safetensors"))
    return 0
