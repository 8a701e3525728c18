"""When a worker says it is ready: its consumer listens *and* every pool process has imported
the render stack and loaded the worker's first model.

The worker's main process and each pool process mark their part in a folder beside the
ready file (``<ready file>.parts/``); whichever marks last writes the ready file. A job
queued once the file exists starts rendering at once, with nothing left to import or load.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

READY_FILE_ENV = "IMAGINARIUM_READY_FILE"
"""The ready file, for the pool processes (set by ``imaginarium worker --ready-file``)."""
POOL_SIZE_ENV = "IMAGINARIUM_POOL_SIZE"
"""How many pool processes must mark themselves ready (0 for pools without processes)."""
WARM_MODEL_ENV = "IMAGINARIUM_WARM_MODEL"
"""The model each pool process loads before it says it is ready."""


def _parts(ready_file: Path) -> Path:
    return ready_file.with_name(ready_file.name + ".parts")


def reset(ready_file: Path) -> None:
    """Forget the marks of an earlier run (call before the pool starts)."""
    ready_file.unlink(missing_ok=True)
    shutil.rmtree(_parts(ready_file), ignore_errors=True)


def mark(ready_file: Path, part: str, pool_size: int) -> bool:
    """Mark ``part`` (``consumer`` or ``pool-<pid>``) ready; write the ready file once the
    consumer and ``pool_size`` pool processes are. Returns whether the worker is ready."""
    parts = _parts(ready_file)
    parts.mkdir(parents=True, exist_ok=True)
    (parts / part).write_text(str(os.getpid()))
    names = {p.name for p in parts.iterdir()}
    pools = sum(1 for name in names if name.startswith("pool-"))
    if "consumer" not in names or pools < pool_size:
        return False
    temporary = ready_file.with_name(f"{ready_file.name}.{os.getpid()}.tmp")
    temporary.write_text(str(os.getppid() if part != "consumer" else os.getpid()))
    os.replace(temporary, ready_file)
    return True
