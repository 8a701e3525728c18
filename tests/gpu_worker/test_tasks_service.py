"""The render task's job lifecycle (gpu_worker.service) on the real Postgres and Redis.

The renderer is a stand-in here (a function that returns stored-image records or raises),
so that these tests pin down what happens *around* a render: claims, leases, retries up to
the cap, refunds, the NOTIFY, takeovers from dead workers and the reconciler. The real
renderer and a real Celery worker are exercised in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import asyncpg
import pytest
import redis
import torch
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, update

from core.settings import load_settings
from core.spec import JobSpec, Lane, PromptPart
from core.tasks import JOB_EVENTS_CHANNEL, MAX_ATTEMPTS
from db.models import CreditLedger, Image, Job, JobStatus, LedgerKind, Outbox, User
from db.repositories import claim_job, create_job, grant_credits, upsert_user
from gpu_worker.failures import JobRejected
from gpu_worker.leases import LeaseBook, new_owner
from gpu_worker.records import ClaimedJob, RenderResult, StoredImage
from gpu_worker.recovery import ReconcileReport, reconcile
from gpu_worker.registry import IntegrityError, ModelLoadError
from gpu_worker.service import RenderOutcome, WorkerRuntime, render_job
from gpu_worker.tasks import build_runtime

COST = 3
_discord_ids = itertools.count(os.getpid() * 1_000_000 + 500_000)


class StubRenderer:
    """Returns four stored-image records, or raises what the test queued for each call."""

    def __init__(self) -> None:
        self.calls: list[ClaimedJob] = []
        self.failures: list[BaseException | None] = []

    def __call__(self, job: ClaimedJob) -> RenderResult:
        self.calls.append(job)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        images = tuple(
            StoredImage(
                index=i,
                seed=job.seed + i,
                storage_key=f"{job.id}/{i}.png",
                width=job.spec.width,
                height=job.spec.height,
                sha256=f"{i:064x}",
                nsfw_score=0.01 * i,
                nsfw=i == 3,
            )
            for i in range(4)
        )
        return RenderResult(images=images, grid_storage_key=f"{job.id}/grid.png")


class Published(list[tuple[uuid.UUID, str, str]]):
    """The render tasks the service published (job id, lane, model)."""

    def __call__(self, job_id: uuid.UUID, lane: str, model: str) -> None:
        self.append((job_id, lane, model))


@pytest.fixture
def renderer() -> StubRenderer:
    return StubRenderer()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def runtime(
    db_url: str, redis_url: str, renderer: StubRenderer, published: Published
) -> Iterator[WorkerRuntime]:
    settings = load_settings(database_url=db_url, redis_url=redis_url)
    rt = build_runtime(settings, published, renderer=renderer)
    cancel_other_tests_jobs(rt)
    yield rt
    rt.close()


def cancel_other_tests_jobs(rt: WorkerRuntime) -> None:
    """Cancel the queued jobs earlier tests left in the session's database: fair share would
    render the oldest of them for this test's message (gpu_worker.service._choose)."""
    from db.repositories import cancel_job

    async def go() -> None:
        async with rt.sessions() as session, session.begin():
            for queued in await session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED)):
                await cancel_job(session=session, job_id=queued)

    rt.run(go())


def _queue_job(
    runtime: WorkerRuntime, *, prompt: str = "a red fox", cost: int = COST
) -> tuple[uuid.UUID, int]:
    """A committed queued job of a new user who had 10 credits; returns (job id, user id)."""

    async def go() -> tuple[uuid.UUID, int]:
        async with runtime.sessions() as session, session.begin():
            user = await upsert_user(session=session, discord_id=next(_discord_ids))
            await grant_credits(session=session, user_id=user.id, amount=10)
            spec = JobSpec(parts=(PromptPart(prompt),), seed=7, width=64, height=48)
            new = await create_job(
                session=session, user_id=user.id, spec=spec, model="tiny", lane=Lane.FAST, cost=cost
            )
            return new.job.id, user.id

    return runtime.run(go())


def _job(runtime: WorkerRuntime, job_id: uuid.UUID) -> Job:
    async def go() -> Job:
        async with runtime.sessions() as session:
            return (await session.scalars(select(Job).where(Job.id == job_id))).one()

    return runtime.run(go())


def _balance(runtime: WorkerRuntime, user_id: int) -> int:
    async def go() -> int:
        async with runtime.sessions() as session:
            return int((await session.scalar(select(User.balance).where(User.id == user_id))) or 0)

    return runtime.run(go())


def _ledger(runtime: WorkerRuntime, job_id: uuid.UUID) -> list[LedgerKind]:
    async def go() -> list[LedgerKind]:
        async with runtime.sessions() as session:
            rows = await session.scalars(
                select(CreditLedger.kind).where(CreditLedger.job_id == job_id).order_by(CreditLedger.id)
            )
            return list(rows)

    return runtime.run(go())


def _images(runtime: WorkerRuntime, job_id: uuid.UUID) -> list[Image]:
    async def go() -> list[Image]:
        async with runtime.sessions() as session:
            return list(
                await session.scalars(select(Image).where(Image.job_id == job_id).order_by(Image.index))
            )

    return runtime.run(go())


def _claim_elsewhere(runtime: WorkerRuntime, job_id: uuid.UUID) -> None:
    """Claim the job as another worker would (status running, one attempt used)."""

    async def go() -> None:
        async with runtime.sessions() as session, session.begin():
            assert await claim_job(session=session, job_id=job_id) is not None

    runtime.run(go())


class Listener:
    """A LISTEN job_events connection on the runtime's loop."""

    def __init__(self, runtime: WorkerRuntime, dsn: str) -> None:
        self.runtime = runtime
        self.payloads: list[str] = []
        self.conn: asyncpg.Connection = runtime.run(asyncpg.connect(dsn))
        runtime.run(self.conn.add_listener(JOB_EVENTS_CHANNEL, lambda *args: self.payloads.append(args[-1])))

    def drain(self) -> list[str]:
        self.runtime.run(asyncio.sleep(0.2))
        return self.payloads

    def close(self) -> None:
        self.runtime.run(self.conn.close())


@pytest.fixture
def listener(runtime: WorkerRuntime, db_url: str) -> Iterator[Listener]:
    listen = Listener(runtime, db_url.replace("postgresql+asyncpg://", "postgresql://"))
    yield listen
    listen.close()


# -- the happy path -----------------------------------------------------------------------


def test_render_records_images_captures_credits_and_notifies(
    runtime: WorkerRuntime, renderer: StubRenderer, listener: Listener
) -> None:
    job_id, user_id = _queue_job(runtime)

    assert render_job(runtime, str(job_id)) is RenderOutcome.DONE

    job = _job(runtime, job_id)
    assert job.status is JobStatus.DONE
    assert job.attempts == 1
    assert job.grid_storage_key == f"{job_id}/grid.png"
    images = _images(runtime, job_id)
    assert [(i.index, i.seed, i.storage_key) for i in images] == [
        (i, 7 + i, f"{job_id}/{i}.png") for i in range(4)
    ]
    assert [i.nsfw for i in images] == [False, False, False, True]
    assert images[1].nsfw_score == pytest.approx(0.01)
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert _balance(runtime, user_id) == 10 - COST
    assert listener.drain() == [str(job_id)]
    # The renderer saw the job as stored: spec, seed, attempt.
    assert renderer.calls[0].spec.prompt == "a red fox" and renderer.calls[0].seed == 7
    # The lease is given back.
    assert not runtime.leases.is_held(job_id)


def test_a_second_task_for_a_done_job_changes_nothing(runtime: WorkerRuntime, renderer: StubRenderer) -> None:
    job_id, user_id = _queue_job(runtime)
    assert render_job(runtime, job_id) is RenderOutcome.DONE

    assert render_job(runtime, job_id) is RenderOutcome.SKIPPED

    assert len(renderer.calls) == 1
    assert _job(runtime, job_id).attempts == 1
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert _balance(runtime, user_id) == 10 - COST


def test_a_task_for_an_unknown_job_is_dropped(runtime: WorkerRuntime, renderer: StubRenderer) -> None:
    assert render_job(runtime, uuid.uuid4()) is RenderOutcome.SKIPPED
    assert renderer.calls == []


# -- failures -----------------------------------------------------------------------------


def test_a_failing_render_is_retried_until_the_cap_then_failed_and_refunded(
    runtime: WorkerRuntime, renderer: StubRenderer, published: Published, listener: Listener
) -> None:
    job_id, user_id = _queue_job(runtime)
    renderer.failures = [RuntimeError("boom")] * MAX_ATTEMPTS

    outcomes = [render_job(runtime, job_id) for _ in range(MAX_ATTEMPTS)]

    assert outcomes == [RenderOutcome.RETRYING] * (MAX_ATTEMPTS - 1) + [RenderOutcome.FAILED]
    # Each retry published the task again to the job's own queue; the last did not.
    assert published == [(job_id, "fast", "tiny")] * (MAX_ATTEMPTS - 1)
    job = _job(runtime, job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempts == MAX_ATTEMPTS
    assert job.error is not None and "internal error" in job.error and "boom" not in job.error
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.RELEASE]
    assert _balance(runtime, user_id) == 10
    # One notification: for the terminal state only.
    assert listener.drain() == [str(job_id)]
    # A late duplicate of the task does nothing.
    assert render_job(runtime, job_id) is RenderOutcome.SKIPPED
    assert len(renderer.calls) == MAX_ATTEMPTS


def test_a_render_that_fails_once_then_succeeds_is_charged_once(
    runtime: WorkerRuntime, renderer: StubRenderer, published: Published
) -> None:
    job_id, user_id = _queue_job(runtime)
    renderer.failures = [OSError("disk hiccup")]

    assert render_job(runtime, job_id) is RenderOutcome.RETRYING
    assert _job(runtime, job_id).status is JobStatus.QUEUED
    assert render_job(runtime, job_id) is RenderOutcome.DONE

    assert _job(runtime, job_id).attempts == 2
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert _balance(runtime, user_id) == 10 - COST
    assert len(_images(runtime, job_id)) == 4


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of GPU memory"),
        (SoftTimeLimitExceeded(), "took too long"),
        (JobRejected("unknown model 'nope'"), "unknown model 'nope'"),
        (IntegrityError("LoRA 'ink': /srv/loras/ink.safetensors does not match its sha256 pin"), "could not be loaded"),
        (ModelLoadError("model 'sd': /srv/models/sd holds only pickle weights (.bin)"), "could not be loaded"),
    ],
    ids=["cuda-oom", "soft-time-limit", "rejected", "wrong-pin", "pickle-only"],
)
def test_oom_time_limit_and_rejections_fail_at_once_with_a_refund(
    runtime: WorkerRuntime,
    renderer: StubRenderer,
    published: Published,
    listener: Listener,
    error: BaseException,
    message: str,
) -> None:
    job_id, user_id = _queue_job(runtime)
    renderer.failures = [error]

    assert render_job(runtime, job_id) is RenderOutcome.FAILED

    job = _job(runtime, job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert job.error is not None and message in job.error
    assert "/srv" not in job.error and "safetensors" not in job.error
    assert _balance(runtime, user_id) == 10
    assert published == []
    assert listener.drain() == [str(job_id)]
    # The worker keeps serving: the next job renders.
    next_id, _ = _queue_job(runtime)
    assert render_job(runtime, next_id) is RenderOutcome.DONE


# -- leases, duplicates and dead workers --------------------------------------------------


def test_a_duplicate_task_is_dropped_while_another_live_worker_holds_the_lease(
    runtime: WorkerRuntime, renderer: StubRenderer
) -> None:
    job_id, _ = _queue_job(runtime)
    other = LeaseBook(runtime.leases.client, owner=f"{new_owner()}-other")
    assert other.acquire(job_id)
    _claim_elsewhere(runtime, job_id)

    assert render_job(runtime, job_id) is RenderOutcome.SKIPPED

    assert renderer.calls == []
    assert _job(runtime, job_id).status is JobStatus.RUNNING
    assert other.holder(job_id) == other.owner


def _dead_local_owner() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return f"{socket.gethostname()}:{int(proc.stdout)}:deadbeef"


def test_a_redelivered_task_takes_over_from_a_worker_that_died_on_this_host(
    runtime: WorkerRuntime, renderer: StubRenderer
) -> None:
    job_id, user_id = _queue_job(runtime)
    dead = _dead_local_owner()
    assert runtime.leases.acquire(job_id, owner=dead)
    _claim_elsewhere(runtime, job_id)

    assert render_job(runtime, job_id) is RenderOutcome.DONE

    job = _job(runtime, job_id)
    assert job.attempts == 2
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
    assert _balance(runtime, user_id) == 10 - COST


def test_a_worker_dying_on_the_last_attempt_fails_the_job_with_a_refund(
    runtime: WorkerRuntime, renderer: StubRenderer, listener: Listener
) -> None:
    job_id, user_id = _queue_job(runtime)
    renderer.failures = [RuntimeError("boom")] * (MAX_ATTEMPTS - 1)
    for _ in range(MAX_ATTEMPTS - 1):
        assert render_job(runtime, job_id) is RenderOutcome.RETRYING
    assert runtime.leases.acquire(job_id, owner=_dead_local_owner())
    _claim_elsewhere(runtime, job_id)  # the last attempt, by a worker that then died

    assert render_job(runtime, job_id) is RenderOutcome.SKIPPED

    job = _job(runtime, job_id)
    assert job.status is JobStatus.FAILED
    assert _balance(runtime, user_id) == 10
    assert listener.drain() == [str(job_id)]
    assert len(renderer.calls) == MAX_ATTEMPTS - 1


# -- the reconciler -----------------------------------------------------------------------


def _reconcile(runtime: WorkerRuntime, **kwargs: object) -> ReconcileReport:
    return runtime.run(
        reconcile(sessions=runtime.sessions, leases=runtime.leases, publish=runtime.publish, **kwargs)  # type: ignore[arg-type]
    )


def _age(runtime: WorkerRuntime, job_id: uuid.UUID, seconds: float, *, published: bool) -> None:
    """Move the job's queue time ``seconds`` back; mark its outbox row published (the bot sent
    the task) or leave it unpublished and as old (the bot died before sending it)."""

    async def go() -> None:
        async with runtime.sessions() as session, session.begin():
            back = timedelta(seconds=seconds)
            await session.execute(update(Job).where(Job.id == job_id).values(queued_at=Job.queued_at - back))
            await session.execute(
                update(Outbox)
                .where(Outbox.job_id == job_id)
                .values(created_at=Outbox.created_at - back, published_at=func.now() if published else None)
            )

    runtime.run(go())


def test_reconciler_requeues_running_jobs_without_a_lease_and_leaves_live_ones(
    runtime: WorkerRuntime, published: Published
) -> None:
    orphan, _ = _queue_job(runtime)
    _claim_elsewhere(runtime, orphan)  # claimed, and its worker vanished with its lease
    alive, _ = _queue_job(runtime)
    other = LeaseBook(runtime.leases.client, owner=f"{new_owner()}-other")
    assert other.acquire(alive)
    _claim_elsewhere(runtime, alive)

    report = _reconcile(runtime, running_after=timedelta(0))

    assert orphan in report.requeued and alive not in report.requeued
    assert _job(runtime, orphan).status is JobStatus.QUEUED
    assert _job(runtime, alive).status is JobStatus.RUNNING
    assert (orphan, "fast", "tiny") in published and all(p[0] != alive for p in published)
    assert not runtime.leases.is_held(orphan)


def test_reconciler_republishes_overdue_queued_jobs_once_per_grace_period(
    runtime: WorkerRuntime, published: Published
) -> None:
    job_id, _ = _queue_job(runtime)
    _age(runtime, job_id, 600, published=True)  # its message was lost with the broker

    first = _reconcile(runtime)
    second = _reconcile(runtime)

    assert job_id in first.republished
    assert job_id not in second.republished
    assert published.count((job_id, "fast", "tiny")) == 1


def test_reconciler_leaves_fresh_queued_jobs_alone(runtime: WorkerRuntime, published: Published) -> None:
    job_id, _ = _queue_job(runtime)
    _age(runtime, job_id, 5, published=True)

    report = _reconcile(runtime)

    assert job_id not in report.republished
    assert all(p[0] != job_id for p in published)


def test_the_worker_drains_the_outbox_when_the_bot_died_before_publishing(
    runtime: WorkerRuntime, published: Published
) -> None:
    job_id, _ = _queue_job(runtime)
    _age(runtime, job_id, 6, published=False)

    first = _reconcile(runtime)
    second = _reconcile(runtime)

    assert job_id in first.republished and job_id not in second.republished
    assert published.count((job_id, "fast", "tiny")) == 1

    async def outbox_row() -> Outbox:
        async with runtime.sessions() as session:
            return (await session.scalars(select(Outbox).where(Outbox.job_id == job_id))).one()

    assert runtime.run(outbox_row()).published_at is not None


# -- leases on their own ------------------------------------------------------------------


def test_leases_are_exclusive_and_only_the_holder_extends_or_drops_them(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    a = LeaseBook(client, owner="host-a:1:aa", ttl_s=30)
    b = LeaseBook(client, owner="host-b:2:bb", ttl_s=30)
    job_id = uuid.uuid4()

    assert a.acquire(job_id)
    assert not b.acquire(job_id)
    assert not b.extend(job_id) and not b.release(job_id)
    assert a.holder(job_id) == "host-a:1:aa"
    assert a.release(job_id)
    assert b.acquire(job_id)
    client.close()


def test_a_lease_lapses_without_its_heartbeat_and_lives_with_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    leases = LeaseBook(client, ttl_s=1)
    kept, lapsed = uuid.uuid4(), uuid.uuid4()
    assert leases.acquire(kept) and leases.acquire(lapsed)

    with leases.heartbeat(kept, interval_s=0.2):
        time.sleep(1.6)

    assert leases.is_held(kept)
    assert not leases.is_held(lapsed)
    client.close()


def test_a_job_stopped_while_rendering_charges_the_rendered_share(
    runtime: WorkerRuntime, renderer: StubRenderer, listener: Listener
) -> None:
    from gpu_worker.stopping import JobStopped

    job_id, user_id = _queue_job(runtime, cost=4)
    renderer.failures = [JobStopped(0.25)]

    assert render_job(runtime, job_id) is RenderOutcome.CANCELLED

    job = _job(runtime, job_id)
    assert (job.status, job.refunded, job.error) == (JobStatus.CANCELLED, 3, "stopped by its owner at 25%")
    assert _ledger(runtime, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE, LedgerKind.REFUND]
    assert _balance(runtime, user_id) == 10 - 1
    assert listener.drain() == [str(job_id)]
    assert render_job(runtime, job_id) is RenderOutcome.SKIPPED  # a late duplicate does nothing


def test_a_task_redelivered_after_a_stop_request_renders_nothing(
    runtime: WorkerRuntime, renderer: StubRenderer, listener: Listener
) -> None:
    from db.repositories import request_stop

    job_id, user_id = _queue_job(runtime, cost=4)

    async def stop_while_running() -> None:
        # A worker claimed it, the owner asked it to stop, and that worker died.
        async with runtime.sessions() as session, session.begin():
            await claim_job(session=session, job_id=job_id)
            assert await request_stop(session=session, job_id=job_id)

    runtime.run(stop_while_running())

    assert render_job(runtime, job_id) is RenderOutcome.CANCELLED

    assert renderer.calls == []
    job = _job(runtime, job_id)
    assert (job.status, job.refunded) == (JobStatus.CANCELLED, 4)
    assert _balance(runtime, user_id) == 10
    assert listener.drain() == [str(job_id)]
