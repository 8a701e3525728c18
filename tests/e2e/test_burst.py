"""Thirty users at once: every one acknowledged fast, charged once per job, answered once."""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter

import pytest
from sqlalchemy import select

from db.models import Job, JobStatus
from tests.e2e.conftest import Deployment, e2e_guild
from tests.fake_discord import FakeGuild

USERS = 30


@pytest.fixture
def guild() -> FakeGuild:
    return e2e_guild(members=USERS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def test_thirty_users_imagine_at_once(deployment: Deployment, print_report: list[str]) -> None:
    d = deployment
    users = [f"user{i:02d}" for i in range(USERS)]
    for user in users:
        await d.grant(user, 3)
    await d.start_worker(simulated_s=0.2)  # the bot and the queue are under test, not the render

    interactions = await asyncio.gather(
        *(
            d.fake.slash("imagine", {"prompt": f"a lighthouse number {n}"}, user=user)
            for n, user in enumerate(users)
        )
    )
    await d.fake.wait_for(
        lambda: all(i.response is not None for i in interactions), timeout=30, what="every ack"
    )
    latencies = [i.ack_latency for i in interactions if i.ack_latency is not None]
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    print_report.append(
        f"/imagine x{USERS} at once: ack latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (target p99 < 500 ms)"
    )
    assert len(latencies) == USERS
    assert all(i.response is not None and i.response.type == 5 for i in interactions)

    jobs = [await d.job_of(i) for i in interactions]
    assert len({job.id for job in jobs}) == USERS

    # Every job renders and is posted; then nothing more is posted for a while.
    async def ended() -> list[Job]:
        async with d.sessions() as session:
            found = list(await session.scalars(select(Job).where(Job.id.in_([j.id for j in jobs]))))
        return [j for j in found if j.status == JobStatus.DONE and j.result_message_id is not None]

    deadline = asyncio.get_running_loop().time() + 600
    while len(done := await ended()) < USERS:
        assert asyncio.get_running_loop().time() < deadline, (
            f"only {len(done)} of {USERS} jobs were delivered"
        )
        await asyncio.sleep(1)
    await asyncio.sleep(5)  # a sweep or a late retry would post again now

    for user in users:
        assert await d.balance(user) == 2, f"{user} was not charged exactly once"
    results = [m for m in d.fake.messages.values() if m.attachments and not m.deleted]
    assert len(results) == USERS
    created = Counter(e.message_id for e in d.fake.message_events if e.kind == "create")
    assert max(created.values()) == 1
    per_interaction = Counter(m.interaction_id for m in results)
    assert set(per_interaction.values()) == {1}
    assert {m.id for m in results} == {job.result_message_id for job in await ended()}
