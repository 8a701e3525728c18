"""How a worker process uses its host's memory allocator and CPU threads.

Two settings: the allocator's, applied by ``imaginarium worker`` before Celery starts (its
pool processes are forked from it and inherit it), and the render threads, chosen by the
renderer before each job:

- **freed memory is kept for the next render** (:func:`keep_freed_memory`). glibc's malloc
  returns large freed blocks to the system at once (``mmap`` above a threshold, heap
  trimming above another), so every denoising step of the next render faults the same
  pages in again, zeroed by the kernel: measured on the tiny SD 1.5 model at 64x64, a render
  of four images in the main thread took 190,000-245,000 page faults and ran 9 % slower
  than the same call in a thread (whose arena trims less); with the thresholds raised, no
  faults and no difference. The thresholds bound what is kept (:data:`MMAP_THRESHOLD_BYTES`,
  :data:`TRIM_THRESHOLD_BYTES`).
- **render threads follow the cores other processes leave free** (:class:`CpuShare`), on a
  CPU: before each job the worker counts how many cores the rest of the machine kept busy
  since the last one and renders with the cores left (at least one, at most the machine's
  or the operator's ``OMP_NUM_THREADS``... count). Measured on 2 cores, tiny SD 1.5, 64x64,
  20 steps, 4 images: idle, 1 thread 3.50 s and 2 threads 2.04 s; beside one busy process,
  1 thread 3.42 s and 2 threads 6.14 s (OpenMP's waiting threads spin on the core the other
  process needs). Sleeping instead of spinning (``OMP_WAIT_POLICY=PASSIVE``) gave 3.88 s busy
  but 2.53 s idle, and a short spin (``GOMP_SPINCOUNT=1000``) 4.51 s and 2.21 s: no waiting
  policy makes 2 threads as fast as 1 beside a busy process, so the thread count follows
  the load instead, with OpenMP's default waiting. An operator who sets ``OMP_NUM_THREADS``
  gets exactly that many threads.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

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


class CpuShare:
    """How many threads the next CPU render should use (see the module docstring).

    A daemon thread samples the machine's CPU ticks and this process's CPU time every
    ``period`` seconds; :meth:`threads` reads how many cores the other processes kept busy
    over the last ``window`` seconds and returns the cores they left (at least one).

    Args:
        fixed: a thread count to use always (the operator's ``OMP_NUM_THREADS``); None adapts.
        cores: the cores this process may run on (default: its CPU affinity).
        stat: reads ``(busy, total)`` CPU ticks of the whole machine (default: ``/proc/stat``).
        own: this process's CPU seconds so far (default: ``os.times``).
        clock: monotonic seconds.
        window: seconds of history :meth:`threads` looks at.
        period: seconds between samples.
    """

    def __init__(
        self,
        *,
        fixed: int | None = None,
        cores: int | None = None,
        stat: Callable[[], tuple[float, float]] | None = None,
        own: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: float = 0.5,
        period: float = 0.1,
    ) -> None:
        self.fixed = fixed
        self.cores = cores or _cores()
        self.window = window
        self.period = period
        self._stat = stat or _proc_stat
        self._own = own or (lambda: sum(os.times()[:2]))
        self._clock = clock
        self._samples: collections.deque[tuple[float, float, float, float]] = collections.deque(
            maxlen=max(2, int(window / period) + 2)
        )
        self._lock = threading.Lock()
        self._sampler: threading.Thread | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> CpuShare:
        """Fixed at ``OMP_NUM_THREADS`` when the operator set it, adaptive otherwise."""
        raw = env.get("OMP_NUM_THREADS", "").strip()
        return cls(fixed=int(raw) if raw.isdigit() and int(raw) > 0 else None)

    def sample(self) -> None:
        """Record one sample (the sampler thread calls this every ``period`` seconds)."""
        try:
            busy, total = self._stat()
        except OSError:
            return
        with self._lock:
            self._samples.append((self._clock(), busy, total, self._own()))

    def start(self) -> None:
        """Start the sampler thread (once); :meth:`threads` starts it on first use."""
        if self.fixed is not None or self._sampler is not None:
            return

        def run() -> None:
            while True:
                self.sample()
                time.sleep(self.period)

        self._sampler = threading.Thread(target=run, name="cpu-share", daemon=True)
        self._sampler.start()

    def threads(self) -> int:
        """Threads for the render about to start (see the class docstring)."""
        if self.fixed is not None:
            return self.fixed
        self.start()
        self.sample()
        with self._lock:
            samples = list(self._samples)
        now = samples[-1][0] if samples else 0.0
        recent = [s for s in samples if now - s[0] <= self.window + 1e-9]
        if len(recent) < 2:
            return self.cores
        (t0, busy0, total0, own0), (t1, busy1, total1, own1) = recent[0], recent[-1]
        if total1 <= total0 or t1 <= t0:
            return self.cores
        busy_cores = (os.cpu_count() or self.cores) * (busy1 - busy0) / (total1 - total0)
        others = max(0.0, busy_cores - (own1 - own0) / (t1 - t0))
        return max(1, min(self.cores, int(self.cores - others + 0.5)))


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _proc_stat() -> tuple[float, float]:
    with open("/proc/stat", encoding="ascii") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total
