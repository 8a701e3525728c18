"""Why a render failed: whether another attempt can help, and what the user is told.

The one place that classifies failures. :func:`classify_failure` sorts an exception into a
:class:`FailureKind`; only :attr:`FailureKind.TRANSIENT` is worth another attempt, the rest
fail the job at once with a refund. :func:`user_reason` is the short text stored on the job
and posted to its owner: never an exception's raw text (it may hold a server path, a URL with
a token, a library's internals); the detail goes to the worker's log.
"""

from __future__ import annotations

import enum
import gc
import sys

from core.redaction import user_safe

MAX_REASON_CHARS = 200


class FailureKind(enum.Enum):
    """Why a render raised, which decides between another attempt and failing now."""

    TRANSIENT = enum.auto()
    """Anything unexpected or a network hiccup: worth another attempt, up to the cap."""
    OUT_OF_MEMORY = enum.auto()
    """The GPU ran out of memory: the same job would again; fail and refund now."""
    TIME_LIMIT = enum.auto()
    """The soft time limit fired: fail and refund now rather than hold the GPU three times as long."""
    REJECTED = enum.auto()
    """The job can never run (unknown model or LoRA, a refused or broken image link, a
    missing source image); its message was written for the user."""
    MODEL_BROKEN = enum.auto()
    """The model or LoRA files cannot be loaded (a wrong sha256 pin, corrupt weights, a
    pickle-only folder): no attempt will load them until an operator acts."""


class JobRejected(Exception):
    """A job that no attempt can render; the message is shown to the user."""


_NETWORK_NAMES = ("Connection", "Timeout", "Temporary", "Unavailable")


def classify_failure(exc: BaseException) -> FailureKind:
    """Which :class:`FailureKind` an exception raised by a render is."""
    from celery.exceptions import SoftTimeLimitExceeded

    from gpu_worker.registry import ModelLoadError

    if isinstance(exc, SoftTimeLimitExceeded):
        return FailureKind.TIME_LIMIT
    if is_out_of_memory(exc):
        return FailureKind.OUT_OF_MEMORY
    if isinstance(exc, JobRejected):
        return FailureKind.REJECTED
    if isinstance(exc, ModelLoadError):
        # A hub download that timed out may work next time; files on disk that do not load won't.
        return FailureKind.TRANSIENT if _caused_by_network(exc) else FailureKind.MODEL_BROKEN
    return FailureKind.TRANSIENT


def user_reason(kind: FailureKind, exc: BaseException, *, model: str | None = None) -> str:
    """The one line stored on the job and shown to its owner (no paths, no secrets)."""
    if kind is FailureKind.OUT_OF_MEMORY:
        text = "out of GPU memory; try a smaller size, fewer images or another model"
    elif kind is FailureKind.TIME_LIMIT:
        text = "the render took too long and was stopped"
    elif kind is FailureKind.REJECTED:
        text = str(exc)
    elif kind is FailureKind.MODEL_BROKEN:
        what = f"the model {model!r}" if model else "the model"
        text = f"{what} or one of its LoRAs could not be loaded on the worker; a server admin can see why in its log"
    else:
        text = "the worker hit an internal error"
    return user_safe(text, limit=MAX_REASON_CHARS)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA (or other accelerator) out-of-memory error."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    # Some kernels report it as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _caused_by_network(exc: BaseException) -> bool:
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, TimeoutError | ConnectionError) or any(
            n in type(seen).__name__ for n in _NETWORK_NAMES
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def free_gpu_memory() -> None:
    """Give cached GPU memory back after an out-of-memory error, so the next job can run."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
