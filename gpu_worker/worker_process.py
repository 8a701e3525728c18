"""A real ``imaginarium worker`` in a child process: for the offline main job, tests and benches.

The worker runs in a process group of its own, so that stopping it reaches the Celery pool
children too. Readiness is a file the worker writes from Celery's ``worker_ready`` signal
(``--ready-file``), which is exact where scraping its log would be fragile.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psutil


class WorkerStartError(RuntimeError):
    """The worker process exited or did not become ready in time; the message ends with its log."""


class WorkerProcess:
    """One ``imaginarium worker`` child process.

    Use it as a context manager (start, wait until ready, stop on exit)::

        with WorkerProcess(env={"DATABASE_URL": ..., "REDIS_URL": ...}, models=["tiny"]) as worker:
            ...

    Args:
        env: variables added to this process's environment for the worker (URLs, data dir,
            ``MODELS_FILE``, ...).
        models: the models it serves (``--models``); None for the worker's default.
        lanes: the lanes it serves (``--lanes``).
        pool: Celery pool (``prefork`` keeps time limits and survives a crashed job).
        log_path: where its stdout and stderr go; a temporary file when None.
        extra_args: more ``imaginarium worker`` arguments.
        wrapper: a command the worker runs under (``ip netns exec NAME``: a worker on a
            network of its own, as on another machine).
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        models: Sequence[str] | None = None,
        lanes: Sequence[str] = ("fast", "relax"),
        pool: str = "prefork",
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="imaginarium-worker-")
        tmp = Path(self._tmp.name)
        self.ready_file = tmp / "ready"
        self.log_path = log_path or tmp / "worker.log"
        self.env = dict(env or {})
        self.args = ["--pool", pool, "--lanes", ",".join(lanes), "--ready-file", str(self.ready_file)]
        if models:
            self.args += ["--models", ",".join(models)]
        self.args += list(extra_args)
        self.wrapper = list(wrapper)
        self.process: subprocess.Popen[bytes] | None = None

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker process (returns at once; see :meth:`wait_ready`)."""
        if self.process is not None:
            raise RuntimeError("this worker was started already")
        self.ready_file.unlink(missing_ok=True)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        cmd = [*self.wrapper, sys.executable, "-m", "imaginarium", "worker", *self.args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the worker consumes its queues.

        Raises:
            WorkerStartError: it exited or was not ready within ``timeout`` seconds.
        """
        proc = self._require_started()
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if proc.poll() is not None:
                raise WorkerStartError(f"the worker exited with status {proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise WorkerStartError(f"the worker was not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Stop the worker: a warm shutdown (the job in hand finishes), then a kill after ``timeout``.

        Returns:
            The worker's exit status (None if it was never started).
        """
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(timeout=30)
        # Pool children that outlived their parent (it was killed) would keep consuming.
        self._signal_group(signal.SIGKILL)
        return proc.returncode

    def close(self) -> None:
        """Stop the worker and remove its temporary files."""
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> WorkerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- inspection ---------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The pid of the worker's main process."""
        return self._require_started().pid

    def pool_pids(self) -> list[int]:
        """The pids of the worker's pool processes (empty for the solo pool)."""
        try:
            return [child.pid for child in psutil.Process(self.pid).children(recursive=False)]
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the worker's log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    # -- internals ----------------------------------------------------------------------
    def _require_started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError("the worker was not started")
        return self.process

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._require_started().pid, signum)
