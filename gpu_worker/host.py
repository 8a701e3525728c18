"""How a worker process uses its host's memory allocator and CPU threads.

Two settings, applied by ``imaginarium worker`` before Celery starts (its pool processes are
forked from it and inherit both):

- **freed memory is kept for the next render** (:func:`keep_freed_memory`). glibc's malloc
  returns large freed blocks to the system at once (``mmap`` above a threshold, heap
  trimming above another), so every denoising step of the next render faults the same
  pages in again, zeroed by the kernel: measured on the tiny SD 1.5 model at 64x64, a render
  of four images in the main thread took 190,000-245,000 page faults and ran 9 % slower
  than the same call in a thread (whose arena trims less); with the thresholds raised, no
  faults and no difference. The thresholds bound what is kept (:data:`MMAP_THRESHOLD_BYTES`,
  :data:`TRIM_THRESHOLD_BYTES`).
- **OpenMP threads wait without spinning** (:func:`openmp_env`): by default an OpenMP
  thread that reaches a barrier spins for a while, which on a machine whose cores are busy
  with other work takes the cores the render's other threads need; the worker's renders
  ran several times slower with 2 threads than with 1 that way. ``OMP_WAIT_POLICY=PASSIVE``
  makes them sleep. An operator's own setting wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 256 << 20
"""Blocks below this come from the heap (and are reused) rather than fresh ``mmap`` pages."""
TRIM_THRESHOLD_BYTES = 512 << 20
"""Free memory at the top of the heap beyond this goes back to the system."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the ones it forks).

    Returns:
        Whether they were set (False where the C library is not glibc).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not done:
        logger.info("could not raise the allocator's thresholds; renders may fault memory in again")
    return done


def openmp_env(env: MutableMapping[str, str] = os.environ) -> None:
    """Make OpenMP threads sleep at barriers unless ``env`` already says otherwise (before
    torch is imported: OpenMP reads it once)."""
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
