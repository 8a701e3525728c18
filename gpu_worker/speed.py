"""A model entry's speed options (``attention``, ``channels_last``, ``compile``), applied to a
pipeline once it sits on its device.

``compile`` wraps the denoiser (its repeated blocks for ``regional``, the whole module for
``full``) with ``torch.compile`` and renders once, small, before the pipeline is handed out:
compiling takes seconds to minutes, and it belongs to loading (the worker says ready after
it), not to the first member's job. Compiled kernels are cached on disk
(``TORCHINDUCTOR_CACHE_DIR``, set by the worker to ``<data dir>/compile-cache``), so a
restarted worker compiles from cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from core.models import ModelEntry
from gpu_worker.families.base import Adapter

log = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend (tests use ``eager``, which traces without generating code)."""
WARM_UP_STEPS = 2
"""Denoising steps of the render that triggers compilation at load."""


class SpeedOptionError(RuntimeError):
    """A speed option this model or machine cannot take; the message says which and why."""


def apply_speed_options(pipe: Any, entry: ModelEntry, family: Adapter) -> None:
    """Set the attention backend, memory format and compilation the entry asks for.

    Raises:
        SpeedOptionError: an attention backend on a UNet family, an unknown backend, or one
            whose kernels are not installed.
    """
    speed = entry.speed
    what = f"model {entry.name!r}"
    denoiser = getattr(pipe, family.denoiser)
    if speed.attention != "native":
        if family.denoiser != "transformer":
            raise SpeedOptionError(
                f"{what}: attention = {speed.attention!r} applies to transformer families; "
                "UNet families run PyTorch's SDPA (attention = \"native\")"
            )
        try:
            denoiser.set_attention_backend(speed.attention)
        except (ValueError, RuntimeError, ImportError) as exc:
            raise SpeedOptionError(f"{what}: attention backend {speed.attention!r}: {exc}") from None
    if speed.channels_last:
        for name in (family.denoiser, "vae"):
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented, not in the stubs
    if speed.compile == "none":
        return
    if speed.compile == "regional" and getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(fullgraph=True, backend=COMPILE_BACKEND)
    else:
        # ``full``, or a denoiser with no repeated blocks declared (SD3's): the whole module.
        denoiser.compile(backend=COMPILE_BACKEND)
    warm_up(pipe, entry)


def warm_up(pipe: Any, entry: ModelEntry) -> float:
    """Render once at the model's square default size, so that compilation happens now.

    Returns:
        The seconds it took.
    """
    width, height = entry.defaults.size_for((1, 1))
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt="warm-up", num_inference_steps=WARM_UP_STEPS, width=width, height=height, output_type="latent")
    seconds = time.perf_counter() - started
    log.info("model %s compiled and warm (%.1f s)", entry.name, seconds)
    return seconds
