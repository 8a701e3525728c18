"""Stopping the bot's background tasks, even when a library swallows a cancellation.

Some awaits in client libraries turn a ``CancelledError`` that lands inside them into a
timeout or a return (an ``asyncio.timeout`` racing the cancel), after which a loop of ours
would wait on its queue forever and a shutdown that awaits it would hang. So a task is
cancelled again every half second while it still runs (the next cancel lands in our own
await), and given up after ``timeout`` with a warning rather than awaited forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], *, timeout: float = 10.0) -> None:
    """Cancel ``tasks`` and wait for them, repeating the cancel for those that swallowed it."""
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning("background tasks did not stop: %s", ", ".join(t.get_name() for t in pending))
            return
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.5))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("background task %s ended with %r", task.get_name(), task.exception())
