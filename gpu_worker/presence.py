"""The worker's presence heartbeat (see :mod:`core.workers`), a thread of its main process."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from core.workers import (
    HEARTBEAT_S,
    PRESENCE_TTL_S,
    WORKER_ID_ENV,
    WorkerPresence,
    last_served_key,
    presence_key,
    warm_key,
)

logger = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("imaginarium")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without install
        return ""


class PresenceThread:
    """Writes this worker's presence record every :data:`HEARTBEAT_S` until stopped; deletes
    it on a clean stop (a killed worker's record expires on its own)."""

    def __init__(
        self, client: Any, *, models: Sequence[str], lanes: Sequence[str], worker_id: str | None = None,
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.client = client
        self.presence = WorkerPresence(
            worker_id=worker_id or f"{socket.gethostname()}-{os.getpid()}",
            models=tuple(models),
            lanes=tuple(lanes),
            version=_version(),
            started_at=time.time(),
        )
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Write the record once, with what the pool processes report as warm (and stamp
        each model as served now)."""
        now = time.time()
        presence = self.presence
        extra = self._pool_reports()
        if extra:
            presence = WorkerPresence(
                worker_id=presence.worker_id, models=presence.models, lanes=presence.lanes,
                version=presence.version, started_at=presence.started_at, extra=extra,
            )
        pipe = self.client.pipeline(transaction=False)
        pipe.set(presence_key(presence.worker_id), presence.to_json(), ex=PRESENCE_TTL_S)
        for model in self.presence.models:
            pipe.set(last_served_key(model), f"{now:.3f}", ex=30 * 24 * 3600)
        pipe.execute()

    def _pool_reports(self) -> dict[str, object]:
        """Warm models (all pools together) and the least free GPU memory they report."""
        warm: list[str] = []
        free: list[int] = []
        for key in self.client.scan_iter(match=warm_key(self.presence.worker_id, 0).rsplit(":", 1)[0] + ":*"):
            raw = self.client.get(key)
            try:
                report = json.loads(raw) if raw else {}
            except ValueError:
                continue
            warm += [str(m) for m in report.get("warm", []) if str(m) not in warm]
            if isinstance(report.get("free_gpu_mb"), int):
                free.append(report["free_gpu_mb"])
        extra: dict[str, object] = {}
        if warm:
            extra["warm"] = warm
        if free:
            extra["free_gpu_mb"] = min(free)
        return extra

    def start(self) -> None:
        os.environ[WORKER_ID_ENV] = self.presence.worker_id  # for the pool processes it forks
        if self._thread is None:
            self.beat_quietly()
            self._thread = threading.Thread(target=self._run, name="presence", daemon=True)
            self._thread.start()

    def beat_quietly(self) -> None:
        try:
            self.beat()
        except Exception:  # Redis may be away for a while; the next beat tries again
            logger.warning("could not write this worker's presence", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat_quietly()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.client.delete(presence_key(self.presence.worker_id))
        except Exception:
            logger.warning("could not remove this worker's presence", exc_info=True)
