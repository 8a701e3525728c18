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


def test_openmp_threads_sleep_unless_the_operator_says_otherwise() -> None:
    env: dict[str, str] = {}
    host.openmp_env(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    host.openmp_env(mine)
    assert mine == {"OMP_WAIT_POLICY": "ACTIVE"}
