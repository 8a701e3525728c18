"""Writing a folder once, safely, when several worker processes may want it at the same time."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


def write_folder_once(folder: Path, write: Callable[[Path], object]) -> Path:
    """Write ``folder`` with ``write(staging)`` beside it, then move it into place: a crash
    never leaves a half-written folder, and when another process got there first its folder
    stands and ours is dropped."""
    staging = folder.parent / f".{folder.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process wrote it first
        shutil.rmtree(staging, ignore_errors=True)
    return folder
