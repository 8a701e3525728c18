"""Finishing a job behind the next render: NSFW scores, files and the record of one job are
made on a thread of its own while the worker's main thread claims and renders the next.

On a GPU worker everything after the pipeline call (the detector, PNG encoding, the store,
the record) runs on the CPU while the GPU waits; handed to the :class:`Finisher`, it runs
beside the next job's render instead. Nothing about a job's end changes: it is recorded by
:func:`gpu_worker.recording.record_end` as before (its failures retried or refunded, its
task published again), its lease is kept alive until then and dropped after, and a worker
killed in between leaves a ``running`` job whose lease expires, which the reconciler puts
back in the queue, as for a worker killed mid-render.

At most one job waits for the finisher while it finishes another (:meth:`Finisher.submit`
blocks beyond that), so a fast GPU never runs ahead of its CPU. The finisher has its own
event loop and database engine: asyncpg connections belong to the loop that opened them.
A pool process drains it before it exits (:func:`gpu_worker.tasks._close_runtime`).

``FINISH_BEHIND`` (:attr:`core.settings.Settings.finish_behind`) turns it on; ``auto`` turns
it on where the renderer runs on a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.session import create_engine, create_session_factory
from gpu_worker.records import ClaimedJob

logger = logging.getLogger(__name__)

T = TypeVar("T")

DRAIN_TIMEOUT_S = 300.0
"""How long a closing process waits for the jobs it has yet to finish."""


def wanted(setting: str) -> bool:
    """Whether ``FINISH_BEHIND`` turns the finisher on here (``auto``: where CUDA is)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - the render stack always has torch
        return False


@dataclass
class FinishContext:
    """What a job's finish runs with: the finisher's own loop and database sessions (the
    same names as :class:`gpu_worker.service.WorkerRuntime`'s, which
    :func:`gpu_worker.recording.record_end` reads)."""

    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the finisher's loop."""
        return self.loop.run_until_complete(coro)


Finish = Callable[[FinishContext], None]
"""One job's finish: called on the finisher's thread with its context."""


@dataclass(frozen=True, slots=True)
class _Pending:
    job: ClaimedJob
    finish: Finish
    handed: contextlib.ExitStack
    """What the render held for the job (its lease's heartbeat); closed after the finish."""


class Finisher:
    """One thread that finishes jobs in the order they were handed over."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=1)
        self._idle = threading.Condition()
        self._busy = 0
        self._thread = threading.Thread(target=self._serve, name="finisher", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, job: ClaimedJob, finish: Finish, handed: contextlib.ExitStack) -> None:
        """Finish ``job`` on the finisher's thread (blocks while another job already waits).

        Args:
            finish: scores, stores and records the job, and publishes its retry if any.
            handed: closed once ``finish`` returned or raised (the lease's heartbeat).
        """
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        with self._idle:
            self._busy += 1
        self._queue.put(_Pending(job, finish, handed))

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait until every handed-over job is finished; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("%d job(s) left unfinished at shutdown; their leases expire and the "
                                   "reconciler queues them again", self._busy)
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Drain, then stop the thread."""
        self.drain()
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=10)

    @property
    def pending(self) -> int:
        """Jobs handed over and not finished yet."""
        with self._idle:
            return self._busy

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        engine = create_engine(self._database_url, pool_size=1, max_overflow=1)
        context = FinishContext(loop=loop, engine=engine, sessions=create_session_factory(engine))
        try:
            while (pending := self._queue.get()) is not None:
                try:
                    pending.finish(context)
                except Exception:
                    # Its record failed (the database went away): the job stays running, its
                    # lease lapses below, and the reconciler queues it again.
                    logger.exception("job %s: could not finish it", pending.job.id)
                finally:
                    pending.handed.close()
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()
        finally:
            try:
                loop.run_until_complete(engine.dispose())
            finally:
                loop.close()
