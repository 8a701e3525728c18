"""What the training stages of the ``shapes`` model share: seeds drawn from names, the
learning-rate curve, scenes as tensors, atomic checkpoints and step logs
(:mod:`gpu_worker.training.train` and :mod:`gpu_worker.training.own_latents` use them)."""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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


def weighted_error(prediction: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None,
                 extra: float, power: int = 2) -> torch.Tensor:
    """The mean squared error (``power`` 2) or mean absolute error (``power`` 1) with
    ``1 + extra * region`` as each pixel's weight, normalised by the weights' mean so that the
    loss keeps its scale (the plain mean error when ``extra`` is 0).

    ``region`` is ``(N, 1, H, W)`` in [0, 1] at the resolution of ``prediction``.
    """
    error = (prediction - target).abs() if power == 1 else (prediction - target).square()
    if region is None or extra == 0:
        return error.mean()
    weight = 1.0 + extra * region
    return (error * weight).mean() / weight.mean()


def decoder_loss(recon: torch.Tensor, images: torch.Tensor, region: torch.Tensor | None, region_weight: float,
                 region_l1: bool = False) -> torch.Tensor:
    """A decoder stage's loss: the absolute plus the squared error, the region weighing the
    squared one (or, with ``region_l1``, the absolute one: see :func:`tune_decoder_steps`)."""
    if region_l1:
        return F.mse_loss(recon, images) + weighted_error(recon, images, region, region_weight, power=1)
    return weighted_error(recon, images, region, region_weight) + F.l1_loss(recon, images)


DecoderBatch = Callable[[int], tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]]
"""From a step number to the latents of that step, the images they must decode to, and the
shape region to weigh (or None)."""


def tune_decoder_steps(
    vae: Any, *, name: str, steps: int, lr: float, warmup: int, ckpt_path: Path, checkpoint_every: int,
    batch: DecoderBatch, region_weight: float = 0.0, region_l1: bool = False, extra: dict[str, float] | None = None,
    log: Log = print_log,
) -> tuple[StageLog, dict[str, float]]:
    """Fine-tune ``vae``'s decoder (the encoder stays as it is) for ``steps`` steps of
    ``batch``, resumably: L1 plus the (region-weighted) squared error, AdamW, the warm-up and
    cosine curve of :func:`learning_rate`. With ``region_l1`` the region weighs the absolute
    error instead: where the latents leave a pixel in doubt (a corner that is a square's or a
    circle's), the squared error is least for the blend of the two, the absolute error for the
    likelier of them, so the decoder commits to one shape rather than drawing between them.

    Args:
        name: the stage's name in the log ("decoder: resuming at step N").
        extra: figures kept in the checkpoint beside the weights; a resumed run returns the
            ones it saved.

    Returns:
        The stage's figures and ``extra``.
    """
    params = [*vae.decoder.parameters(), *(vae.post_quant_conv.parameters() if vae.post_quant_conv else [])]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    stage, kept = StageLog(), dict(extra or {})
    state = load_checkpoint(ckpt_path)
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stage = StageLog(**state["log"])
        kept.update(state.get("extra", {}))
        log(f"{name}: resuming at step {stage.steps}")
    vae.requires_grad_(False)
    for param in params:
        param.requires_grad_(True)
    vae.train()
    window: list[float] = []
    while stage.steps < steps:
        step, started = stage.steps, time.perf_counter()
        latents, images, region = batch(step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        recon = vae.decode(latents).sample
        loss = decoder_loss(recon, images, region, region_weight, region_l1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if count_step(stage, window, loss.item(), started):
            log(f"{name} {stage.steps}/{steps} loss {stage.losses[-1]:.5f} {stage.seconds / stage.steps:.2f} s/step")
        if stage.steps % checkpoint_every == 0 or stage.steps == steps:
            save_atomic({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "log": asdict(stage),
                         "extra": kept}, ckpt_path)
    vae.requires_grad_(True)
    vae.eval()
    return stage, kept
