"""What the training stages of the ``shapes`` model share: seeds drawn from names, the
learning-rate curve, scenes as tensors, atomic checkpoints and step logs
(:mod:`gpu_worker.training.train` and :mod:`gpu_worker.training.own_latents` use them)."""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gpu_worker.training.dataset import Scene, draw_scene


@dataclass(slots=True)
class StageLog:
    """Figures of one stage: steps done, seconds spent (over all resumptions), loss trace."""

    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    """Mean loss of each block of ``LOG_EVERY`` steps."""

    def final_loss(self, blocks: int = 4) -> float | None:
        """Mean of the last ``blocks`` logged losses (None before any)."""
        tail = self.losses[-blocks:]
        return float(sum(tail) / len(tail)) if tail else None


LOG_EVERY = 10
"""Steps per logged loss value."""


def count_step(stage: StageLog, window: list[float], loss: float, started: float) -> bool:
    """Count one finished step (its loss and seconds) in ``stage``; True when it ends a block of
    :data:`LOG_EVERY` steps, whose mean loss is then the last of ``stage.losses``."""
    window.append(loss)
    stage.steps += 1
    stage.seconds += time.perf_counter() - started
    if stage.steps % LOG_EVERY:
        return False
    stage.losses.append(sum(window) / len(window))
    window.clear()
    return True


def step_seed(*parts: object) -> int:
    """A stable 63-bit seed from the given parts (CRC-32 of each, combined)."""
    value = 0
    for part in parts:
        value = (value * 0x100000001B3 + zlib.crc32(str(part).encode())) % (2**63)
    return value


def generator(*parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`step_seed`."""
    return torch.Generator("cpu").manual_seed(step_seed(*parts))


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak``, then cosine decay to a tenth of it at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def scenes_to_tensor(scenes: Sequence[Scene]) -> torch.Tensor:
    """Draw scenes as a ``(N, 3, H, W)`` float tensor in [-1, 1] (the VAE's range)."""
    pixels = np.stack([np.asarray(draw_scene(s), dtype=np.float32) for s in scenes])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2) / 127.5 - 1.0


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    # weights_only: a checkpoint is plain tensors, numbers and lists; nothing to execute.
    return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


Log = Callable[[str], None]


def print_log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


DECODER_BLUR_MAX = 0.8
"""Largest Gaussian blur (latent pixels) of the decoder stage's latents."""
DECODER_NOISE_MAX = 0.3
"""Largest noise added to them, in units of the latents' standard deviation."""


def blur(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A separable Gaussian blur of each sample by its own ``sigma`` (0: unchanged)."""
    radius = 2
    offsets = torch.arange(-radius, radius + 1, dtype=latents.dtype, device=latents.device)
    kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    out = []
    for sample, kernel in zip(latents, kernels, strict=True):
        channels = sample.shape[0]
        padded = F.pad(sample[None], (radius, radius, radius, radius), mode="replicate")
        horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1).contiguous(), groups=channels)
        out.append(F.conv2d(horizontal, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1).contiguous(), groups=channels))
    return torch.cat(out)


def to_device(device: str, *modules: torch.nn.Module) -> None:
    """Move each module to ``device`` (through ``nn.Module.to``: the model classes wrap theirs)."""
    for module in modules:
        torch.nn.Module.to(module, torch.device(device))
