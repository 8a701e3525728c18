"""Which workers are up and what they serve: the presence record each worker keeps in Redis.

Every worker's main process writes :func:`presence_key` every :data:`HEARTBEAT_S` seconds
with a :data:`PRESENCE_TTL_S` expiry, so a worker that dies drops out within that time, and
for each model it serves it stamps :func:`last_served_key` with the time. The bot reads both:
``/models`` shows what is available now, a job for a model no worker serves is refused
before it is charged, and a queued job whose model has had no worker for
:data:`UNSERVED_GRACE_S` is failed and refunded. Pure data: no Redis client here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

PRESENCE_PREFIX = "imaginarium:worker:"
HEARTBEAT_S = 5.0
"""Seconds between two presence writes of a worker."""
PRESENCE_TTL_S = 20
"""A presence record lives this long unless renewed (four missed heartbeats)."""
UNSERVED_GRACE_S = 600
"""A queued job whose model has had no worker this long (or never had one since it was
queued) is failed and refunded."""


def presence_key(worker_id: str) -> str:
    """The Redis key of one worker's presence record."""
    return f"{PRESENCE_PREFIX}{worker_id}"


WORKER_ID_ENV = "IMAGINARIUM_WORKER_ID"
"""Set by a worker's main process for its pool processes: whose presence they report to."""
WORKER_LANES_ENV = "IMAGINARIUM_WORKER_LANES"
"""Set by a worker's main process for its pool processes: the lanes it serves, comma-separated."""
WARM_TTL_S = 120
"""A pool process's report of its warm models lives this long unless renewed (after each job)."""


def warm_key(worker_id: str, pid: int) -> str:
    """The Redis key where one pool process of a worker reports the models it has loaded."""
    return f"imaginarium:warm:{worker_id}:{pid}"


def last_served_key(model: str) -> str:
    """The Redis key holding when a worker last announced ``model`` (epoch seconds)."""
    return f"imaginarium:model-served:{model}"


@dataclass(frozen=True, slots=True)
class WorkerPresence:
    """What one worker announces."""

    worker_id: str
    models: tuple[str, ...]
    lanes: tuple[str, ...]
    version: str = ""
    started_at: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    """Anything else a worker reports (free GPU memory, warm models), shown as is."""

    def serves(self, model: str, lane: str | None = None) -> bool:
        return model in self.models and (lane is None or lane in self.lanes)

    @property
    def warm(self) -> tuple[str, ...]:
        """The models its pool processes have loaded now (``extra["warm"]``)."""
        found = self.extra.get("warm")
        return tuple(str(m) for m in found) if isinstance(found, list) else ()

    def to_json(self) -> str:
        return json.dumps({
            "worker_id": self.worker_id, "models": list(self.models), "lanes": list(self.lanes),
            "version": self.version, "started_at": self.started_at, "extra": self.extra,
        })

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerPresence | None:
        """The record, or None when it is not one (a foreign or corrupt key is ignored)."""
        try:
            data = json.loads(raw)
            return cls(
                worker_id=str(data["worker_id"]),
                models=tuple(str(m) for m in data["models"]),
                lanes=tuple(str(lane) for lane in data["lanes"]),
                version=str(data.get("version", "")),
                started_at=float(data.get("started_at", 0.0)),
                extra=dict(data.get("extra") or {}),
            )
        except (ValueError, KeyError, TypeError):
            return None


def serving(presences: Iterable[WorkerPresence], model: str, lane: str | None = None) -> list[WorkerPresence]:
    """The workers that serve ``model`` (in ``lane``, when given)."""
    return [p for p in presences if p.serves(model, lane)]
