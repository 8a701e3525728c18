"""The worker's host settings: freed memory is reused instead of faulted in again, and OpenMP
threads do not spin unless the operator says so."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpu_worker import host

_ALLOCATE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from gpu_worker.host import keep_freed_memory
    assert keep_freed_memory()

def step():  # what a denoising step does: tensors of 1-16 MB made, used and freed
    held = [np.ones(n) for n in (1 << 17, 1 << 19, 1 << 20, 1 << 21, 1 << 18, 1 << 20)]
    return sum(a[0] for a in held)

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ALLOCATE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    plain, kept = _faults("plain"), _faults("keep")
    # 20 steps of 38 MB: over 40,000 page faults when the freed blocks go back to the system.
    assert plain > 20_000
    assert kept < plain / 20


class _Machine:
    """A fake /proc/stat and process clock: ``others`` and ``mine`` cores busy per second."""

    def __init__(self, cores: int) -> None:
        self.cores, self.now, self.busy, self.total, self.own = cores, 0.0, 0.0, 0.0, 0.0

    def run(self, seconds: float, *, others: float, mine: float = 0.0) -> None:
        self.now += seconds
        self.busy += 100 * seconds * (others + mine)
        self.total += 100 * seconds * self.cores
        self.own += seconds * mine

    def share(self, **kwargs: object) -> host.CpuShare:
        return host.CpuShare(
            cores=self.cores, stat=lambda: (self.busy, self.total), own=lambda: self.own,
            clock=lambda: self.now, **kwargs,  # type: ignore[arg-type]
        )


def test_render_threads_are_the_cores_other_processes_leave_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.os, "cpu_count", lambda: 4)
    machine = _Machine(cores=4)
    share = machine.share()
    monkeypatch.setattr(share, "start", lambda: None)  # samples taken by hand below
    assert share.threads() == 4  # no history yet: all cores

    def after(seconds: float, **load: float) -> int:
        for _ in range(int(seconds / 0.1)):
            machine.run(0.1, **load)
            share.sample()
        return share.threads()

    assert after(1.0, others=0.1) == 4  # an idle machine
    assert after(1.0, others=1.0) == 3  # one other busy process
    assert after(1.0, others=2.6) == 1  # more than half the machine taken: what is left
    assert after(1.0, others=4.0) == 1  # never fewer than one
    # This process's own work is not load: a render that used 3.5 cores leaves them free.
    assert after(1.0, others=0.2, mine=3.5) == 4
    # Only the last half second counts: the others stopped, so all cores are free again.
    after(1.0, others=3.0)
    assert after(0.6, others=0.0) == 4


def test_the_operators_thread_count_is_kept() -> None:
    assert host.CpuShare.from_env({"OMP_NUM_THREADS": "3"}).threads() == 3
    assert host.CpuShare.from_env({}).fixed is None
