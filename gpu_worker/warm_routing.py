"""Jobs go to a worker that has their model warm when one is free, else to one that can load it.

Every worker that serves a model consumes that model's queue, so the broker hands a message
to whichever consumer asks first, warm or not, and loading a model costs seconds to minutes
where a warm one starts at once. So before a pool process renders a job for a model it has
not loaded, it looks at what the other pool processes report (:func:`report`: the models
each has loaded and whether it is rendering): when one of them is alive (its worker's
presence record is there), serves the job's lane and model, has the model loaded and is
idle, this process hands the message back (publishes it again and acknowledges its own
copy) and pauses :data:`PAUSE_S` before it takes another, so the idle warm process takes it.

When every warm process is busy (or none exists), the cold process loads the model and
renders: a free GPU beats a queue behind a busy one. A job is handed back at most
:data:`MAX_HANDOFFS` times (a counter per job in Redis), so a report that is wrong (a warm
process that just took other work) delays a job by about ``MAX_HANDOFFS * PAUSE_S`` and never
strands it. Without Redis the check is skipped: routing is an optimisation, never a
condition for a job to run.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.workers import WARM_TTL_S, WORKER_ID_ENV, WorkerPresence, presence_key, warm_key

logger = logging.getLogger(__name__)

PAUSE_S = 0.5
"""How long a process that handed a job back waits before it takes another message."""
MAX_HANDOFFS = 3
"""How often one job may be handed back to a warm process before a cold one renders it."""
HANDOFF_TTL_S = 3600


def handoff_key(job_id: uuid.UUID | str) -> str:
    """The Redis counter of how often ``job_id`` was handed back."""
    return f"imaginarium:handoff:{job_id}"


@dataclass(frozen=True, slots=True)
class PoolReport:
    """What one pool process says about itself (:func:`report`)."""

    worker_id: str
    pid: int
    warm: tuple[str, ...]
    busy: bool


def report(client: Any, loaded: Sequence[str], *, busy: bool) -> None:
    """In a pool process: tell the others which models are loaded here and whether this
    process is rendering now, plus free GPU memory on CUDA (the worker's presence record
    gathers the warm models for ``/models``). Never raises: a missed report only ages out."""
    worker_id = os.environ.get(WORKER_ID_ENV)
    if not worker_id:
        return
    record: dict[str, object] = {"warm": list(loaded), "busy": busy}
    try:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            record["free_gpu_mb"] = int(free // (1024 * 1024))
    except Exception:  # no torch (a simulated GPU) or no device: the models are still worth saying
        pass
    try:
        client.set(warm_key(worker_id, os.getpid()), json.dumps(record), ex=WARM_TTL_S)
    except Exception:
        logger.warning("could not report this process's warm models", exc_info=True)


def pool_reports(client: Any) -> list[PoolReport]:
    """Every pool process's report (of every worker) that has not aged out."""
    found = []
    prefix = warm_key("", 0).rsplit(":", 2)[0] + ":"
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    values = client.mget(keys) if keys else []
    for key, raw in zip(keys, values, strict=True):
        name = key.decode() if isinstance(key, bytes) else str(key)
        worker_id, _, pid = name[len(prefix):].rpartition(":")
        try:
            data = json.loads(raw) if raw else None
            if not isinstance(data, dict):
                continue
            found.append(PoolReport(
                worker_id=worker_id, pid=int(pid), warm=tuple(str(m) for m in data.get("warm", [])),
                busy=bool(data.get("busy", False)),
            ))
        except (ValueError, TypeError):
            continue
    return found


def warm_elsewhere_only(client: Any, loaded: Sequence[str]) -> bool:
    """Whether another pool process is idle with a model loaded that this one has not: the
    cheap first look (one scan of Redis), so that a job reads its row only when a hand-back
    could follow. False on any Redis error."""
    me = (os.environ.get(WORKER_ID_ENV), os.getpid())
    try:
        return any(
            set(r.warm) - set(loaded) for r in pool_reports(client) if not r.busy and (r.worker_id, r.pid) != me
        )
    except Exception:
        return False


def idle_warm_elsewhere(client: Any, model: str, lane: str) -> PoolReport | None:
    """An idle pool process of a live worker serving ``model`` in ``lane`` with it loaded,
    other than this one; None when there is none."""
    me = (os.environ.get(WORKER_ID_ENV), os.getpid())
    candidates = [
        r for r in pool_reports(client)
        if model in r.warm and not r.busy and (r.worker_id, r.pid) != me
    ]
    for candidate in candidates:
        raw = client.get(presence_key(candidate.worker_id))
        presence = WorkerPresence.from_json(raw) if raw else None
        if presence is not None and presence.serves(model, lane):
            return candidate
    return None


def should_hand_back(client: Any, *, job_id: uuid.UUID, model: str, lane: str, loaded: Sequence[str]) -> bool:
    """Whether this process should give ``job_id`` back for an idle process that has its
    model warm (counting the hand-off when it should). Never raises."""
    if model in loaded:
        return False
    try:
        warm = idle_warm_elsewhere(client, model, lane)
        if warm is None:
            return False
        key = handoff_key(job_id)
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, HANDOFF_TTL_S)
        count = int(pipe.execute()[0])
    except Exception:
        logger.warning("could not look for a warm worker; rendering here", exc_info=True)
        return False
    if count > MAX_HANDOFFS:
        return False
    logger.info(
        "job %s: handed back for %s, which has %s warm and is idle (hand-off %d of %d)",
        job_id, warm.worker_id, model, count, MAX_HANDOFFS,
    )
    return True
