"""Which job a render message renders: the fast lane first, then fair share per user across
every worker.

A relax-lane message renders a queued fast-lane job of the same model instead when its worker
serves the fast lane, and sends its own message again (:func:`db.repositories.queue.fast_job_instead`:
RabbitMQ delivers from a worker's queues in turn, not fast first). Otherwise a message renders
its own job, or the queued job of the same lane and model whose owner has had the least
(:func:`db.repositories.queue.fairer_job`). Whichever job
another worker takes first, the message looks again, so every message renders one job while
any is queued: a message dropped here would leave a queued job without one until the
reconciler republished it (5-10 s; ``bench/scale.py`` measured the cost).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.workers import WORKER_LANES_ENV
from db.repositories import fairer_job, fast_job_instead

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRIES = 4
"""How often a worker asks again for the fairest job when another worker took it first."""


def choose(
    *,
    leases: Any,
    run: Callable[[Coroutine[Any, Any, Any]], Any],
    sessions: async_sessionmaker[AsyncSession],
    named: uuid.UUID,
    claim: Callable[[uuid.UUID], T | None],
    publish: Callable[[uuid.UUID, str, str], None] | None = None,
) -> tuple[uuid.UUID, T | None] | None:
    """The job this message renders, with its lease held: ``(named, None)`` for the message's
    own job (claimed by the caller), ``(other, claimed)`` for a fast-lane or fairer one
    ``claim`` took while it was still queued; None when there is nothing for this message to
    do. ``publish`` sends a relax message again when a fast job goes first (without it, the
    fast lane has no precedence here)."""
    if publish is not None and "fast" in os.environ.get(WORKER_LANES_ENV, "fast,relax").split(","):
        found = run(_fast_instead(sessions, named))
        if found is not None and leases.acquire(found[0]):
            job = claim(found[0])
            if job is not None:
                logger.info("job %s: rendering fast-lane job %s first; its message goes back in line", named, found[0])
                publish(named, "relax", found[1])
                return found[0], job
            leases.release(found[0])
    for _ in range(TRIES):
        # A job another worker renders (it took it for fair share) leaves this message free
        # to render another; a running job whose lease is free is this message's to take over.
        elsewhere = leases.held_by_another(named)
        fairer = run(_fairer(sessions, named, instead_of_running=elsewhere))
        if fairer is None:
            if not elsewhere and leases.acquire(named):
                return named, None
            if elsewhere:
                return None
            continue  # another worker took it between the two looks: look again
        if leases.acquire(fairer):
            job = claim(fairer)
            if job is not None:
                logger.info("job %s: rendering %s first (fair share)", named, fairer)
                return fairer, job
            leases.release(fairer)
    return (named, None) if leases.acquire(named) else None


async def _fairer(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, *, instead_of_running: bool
) -> uuid.UUID | None:
    async with sessions() as session:
        return await fairer_job(session=session, job_id=job_id, instead_of_running=instead_of_running)


async def _fast_instead(
    sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID
) -> tuple[uuid.UUID, str] | None:
    async with sessions() as session:
        return await fast_job_instead(session=session, job_id=job_id)
