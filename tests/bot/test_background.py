"""Shutting the bot's background loops down, even when a library swallowed a cancellation."""

from __future__ import annotations

import asyncio

from bot.background import stop_tasks


async def test_a_loop_that_swallowed_a_cancel_is_still_stopped() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    swallowed = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)  # a library await that turns the cancel into a return
            except asyncio.CancelledError:
                swallowed.set()
            await queue.get()  # then our own loop would wait here forever

    task = asyncio.create_task(loop(), name="delivery-like")
    await asyncio.sleep(0)

    await asyncio.wait_for(stop_tasks([task], timeout=5), 6)

    assert swallowed.is_set() and task.cancelled()


async def test_a_task_that_never_stops_is_given_up_after_the_timeout() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()

    await stop_tasks([task], timeout=1.0)

    assert asyncio.get_running_loop().time() - started < 2 and not task.done()
    released.set()
    task.cancel()
    await asyncio.wait_for(task, 1)
