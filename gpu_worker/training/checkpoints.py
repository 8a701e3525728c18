"""Checkpoints of the small trainers (the captioner's, the ControlNet's): one network and its
optimizer, the step reached, the loss curve and the seconds spent, written atomically so a
run stopped at any point resumes from the last one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(
    path: Path, net: Any, optimizer: Any, *, step: int, losses: list[float], seconds: float
) -> None:
    """Write the checkpoint beside ``path`` and move it into place (never half written)."""
    tmp = path.with_suffix(".tmp")
    state = {
        "net": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "losses": losses,
        "seconds": seconds,
    }
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, net: Any, optimizer: Any) -> tuple[int, list[float], float]:
    """Restore ``net`` and ``optimizer`` from ``path`` if it exists; ``(step, losses, seconds)``
    to go on from (zeros for a fresh run)."""
    if not path.exists():
        return 0, [], 0.0
    # weights_only: a checkpoint is plain tensors, numbers and lists; nothing to execute.
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    step = int(state["step"])
    print(f"resuming at step {step}", flush=True)
    return step, list(state["losses"]), float(state["seconds"])
