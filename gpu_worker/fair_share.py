"""Which job a render message renders: fair share per user across every worker.

A message names one job; the worker renders that one, or the queued job of the same lane and
model whose owner has had the least (:func:`db.repositories.queue.fairer_job`). Whichever job
another worker takes first, the message looks again, so every message renders one job while
any is queued: a message dropped here would leave a queued job without one until the
reconciler republished it (5-10 s; ``bench/scale.py`` measured the cost).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import fairer_job

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
) -> tuple[uuid.UUID, T | None] | None:
    """The job this message renders, with its lease held: ``(named, None)`` for the message's
    own job (claimed by the caller), ``(other, claimed)`` for a fairer one ``claim`` took
    while it was still queued; None when there is nothing for this message to do."""
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
