"""How a model is held in memory: its placement (device, offload, VAE tiling) and quantised
weights at load time (``quantize``, ``quantize_text_encoders`` and ``denoiser``).

A model entry may ask for its linear layers in fewer bits (``core.models.QUANTIZE``) and may
replace its denoiser with one file, a GGUF one (already quantised, the usual way FLUX,
Qwen-Image and Z-Image are shared for 8-16 GB cards) or a ``.safetensors`` one. Both go
through diffusers' own loaders: a :class:`~diffusers.PipelineQuantizationConfig` that maps
each component to its library's config (diffusers' for the denoiser, transformers' for the
text encoders), and ``from_single_file`` with a :class:`~diffusers.GGUFQuantizationConfig`
for GGUF files. The libraries (torchao, bitsandbytes, gguf) are optional: a model that needs
a missing one is refused with the package's name, never half loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from core.models import MemoryOptions, ModelEntry, SourceKind
from gpu_worker.families.base import Adapter

_TORCHAO_CONFIGS = {"int8": "Int8WeightOnlyConfig", "int4": "Int4WeightOnlyConfig", "fp8": "Float8WeightOnlyConfig"}
"""torchao's weight-only config class for each ``quantize`` value it serves."""
_LIBRARY = {"int8": "torchao", "int4": "torchao", "fp8": "torchao", "nf4": "bitsandbytes"}
_CPU_OK = {"int8"}
"""Quantisations whose kernels run on a CPU (torchao's int8 weight-only)."""


class QuantizationUnavailable(RuntimeError):
    """The entry asks for a quantisation this worker cannot do; the message says why."""


def _require(package: str, what: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise QuantizationUnavailable(f"{what} needs the {package} package on the worker (pip install {package})")


def _component_config(kind: str, *, for_transformers: bool, dtype: torch.dtype) -> Any:
    """The quantisation config of one component, in the terms of the library that loads it."""
    library = importlib.import_module("transformers" if for_transformers else "diffusers")
    if kind == "nf4":
        return library.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
        )
    torchao = importlib.import_module("torchao.quantization")
    return library.TorchAoConfig(getattr(torchao, _TORCHAO_CONFIGS[kind])())


def _gguf_denoiser(entry: ModelEntry) -> bool:
    return entry.denoiser is not None and entry.denoiser.suffix.lower() == ".gguf"


def check_quantization(entry: ModelEntry, target: torch.device) -> None:
    """Refuse what cannot load here, before any weight is read.

    Raises:
        QuantizationUnavailable: a GPU-only quantisation on another device, or a missing library.
    """
    what = f"model {entry.name!r}"
    kind = entry.memory.quantize
    if kind != "none":
        if kind not in _CPU_OK and target.type != "cuda":
            raise QuantizationUnavailable(f"{what}: quantize = {kind!r} needs a CUDA GPU")
        _require(_LIBRARY[kind], f"{what}: quantize = {kind!r}")
    if _gguf_denoiser(entry):
        _require("gguf", f"{what}: a .gguf denoiser")
    if entry.memory.quantize_text_encoders and entry.source.kind is SourceKind.SINGLE_FILE:
        raise QuantizationUnavailable(
            f"{what}: quantize_text_encoders needs a diffusers folder or hub id as the source "
            "(a single-file checkpoint's text encoders load unquantised)"
        )


def pipeline_quantization(entry: ModelEntry, family: Adapter, dtype: torch.dtype) -> Any | None:
    """The ``quantization_config`` for the pipeline's ``from_pretrained``, or None.

    It covers the denoiser (unless a ``denoiser`` file replaces it: :func:`load_denoiser`
    quantises that one) and, with ``quantize_text_encoders``, the family's large text
    encoders.
    """
    kind = entry.memory.quantize
    if kind == "none":
        return None
    if entry.source.kind is SourceKind.SINGLE_FILE:
        # diffusers' pipeline from_single_file takes no quantisation config: the denoiser is
        # loaded on its own (load_denoiser); the text encoders cannot be.
        return None
    from diffusers.quantizers import PipelineQuantizationConfig

    mapping: dict[str, Any] = {}
    if entry.denoiser is None:
        mapping[family.denoiser] = _component_config(kind, for_transformers=False, dtype=dtype)
    if entry.memory.quantize_text_encoders:
        for name in family.large_text_encoders:
            mapping[name] = _component_config(kind, for_transformers=True, dtype=dtype)
    return PipelineQuantizationConfig(quant_mapping=mapping) if mapping else None


def load_denoiser(
    entry: ModelEntry, family: Adapter, dtype: torch.dtype, config: str, file: Path | None = None
) -> torch.nn.Module:
    """Load the entry's ``denoiser`` file (or ``file``) as the family's denoiser class, quantised.

    Args:
        entry: a model entry with ``denoiser`` set, or one whose single-file checkpoint holds
            the denoiser to quantise (pins already checked).
        family: the entry's adapter (the denoiser's class and component name).
        dtype: the compute dtype (GGUF weights are dequantised to it layer by layer).
        config: where the denoiser's config lives: the source's diffusers folder, the single
            file's config folder, or the hub id (an operator's choice to download).
        file: the checkpoint to read the denoiser from; default ``entry.denoiser``.
    """
    path = file or entry.denoiser
    assert path is not None
    import diffusers

    cls = getattr(diffusers, family.denoiser_class)
    kwargs: dict[str, Any] = {"config": config, "subfolder": family.denoiser, "torch_dtype": dtype}
    if entry.source.kind is SourceKind.HUB:
        kwargs["revision"] = entry.source.revision
    else:
        kwargs["local_files_only"] = True
    if path.suffix.lower() == ".gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    elif entry.memory.quantize == "nf4":
        kwargs["quantization_config"] = _component_config("nf4", for_transformers=False, dtype=dtype)
    module: torch.nn.Module = cls.from_single_file(str(path), **kwargs)
    if path.suffix.lower() != ".gguf" and entry.memory.quantize in _TORCHAO_CONFIGS:
        # from_single_file loads a torchao config's model unquantised (diffusers 0.42):
        # quantise the loaded module in place, as torchao's own examples do.
        torchao = importlib.import_module("torchao.quantization")
        torchao.quantize_(module, getattr(torchao, _TORCHAO_CONFIGS[entry.memory.quantize])())
    return module


def place(pipe: Any, target: torch.device, memory: MemoryOptions) -> None:
    """Put the pipeline on its device, or set up offloading, and the VAE's tiling/slicing."""
    if memory.offload == "model":
        pipe.enable_model_cpu_offload(device=target)
    elif memory.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=target)
    else:
        pipe.to(target)
    vae = getattr(pipe, "vae", None)
    if memory.vae_tiling and vae is not None:
        vae.enable_tiling()
    if memory.vae_slicing and vae is not None:
        vae.enable_slicing()
