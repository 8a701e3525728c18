"""Cross-job batching around the render (gpu_worker.batching) on the real Postgres and Redis:
which queued jobs join a call, how long a job waits for them, and that each job is recorded
on its own, as if it had rendered alone."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from sqlalchemy import select

from core.models import ModelCatalog, ModelEntry
from core.models_file import load_catalog
from core.settings import load_settings
from core.spec import JobSpec, Lane, PromptPart
from db.models import Image, Job, JobStatus, User
from db.repositories import cancel_job, create_job, grant_credits, upsert_user
from gpu_worker.cache import PipelineCache
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.rendering import JobRenderer
from gpu_worker.service import RenderOutcome, WorkerRuntime, render_job
from gpu_worker.tasks import build_runtime
from tests.gpu_worker.conftest import TINY_SIZE, TINY_STEPS
from tests.gpu_worker.test_tasks_rendering import DictStore

_discord_ids = itertools.count(os.getpid() * 1_000_000 + 700_000)


class CountingRenderer(JobRenderer):
    """The real renderer, counting its calls (and failing the batched ones when told to)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.alone = 0
        self.fail_batches = False

    def render_batch(self, jobs: Any) -> list[RenderResult | BaseException]:
        self.batches.append(len(jobs))
        if self.fail_batches and len(jobs) > 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().render_batch(jobs)

    def __call__(self, job: ClaimedJob) -> RenderResult:
        self.alone += 1
        return super().__call__(job)


def _catalog(tmp_path: Path, *, jobs: int, window_ms: int) -> ModelCatalog:
    base = load_catalog(None, data_dir=tmp_path)
    entries = tuple(
        replace(e, speed=replace(e.speed, batch_jobs=jobs, batch_window_ms=window_ms)) if e.name == "tiny" else e
        for e in base.entries
    )
    return ModelCatalog(entries=entries, default_name=base.default_name)


def _runtime(db_url: str, redis_url: str, tmp_path: Path, pipe: DiffusionPipeline, *, jobs: int = 4,
             window_ms: int = 0) -> tuple[WorkerRuntime, CountingRenderer]:
    catalog = _catalog(tmp_path, jobs=jobs, window_ms=window_ms)

    def loader(entry: ModelEntry) -> DiffusionPipeline:
        return pipe

    renderer = CountingRenderer(catalog=catalog, pipelines=PipelineCache(catalog, loader=loader), store=DictStore())
    published: list[Any] = []
    rt = build_runtime(load_settings(database_url=db_url, redis_url=redis_url),
                       lambda *args: published.append(args), renderer=renderer)

    async def leave_only_this_tests_jobs() -> None:
        async with rt.sessions() as session, session.begin():
            for queued in await session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED)):
                await cancel_job(session=session, job_id=queued)

    rt.run(leave_only_this_tests_jobs())
    return rt, renderer


@pytest.fixture
def batching(db_url: str, redis_url: str, tmp_path: Path, tiny_sd15: DiffusionPipeline) -> Iterator[Any]:
    made: list[WorkerRuntime] = []

    def make(**kwargs: Any) -> tuple[WorkerRuntime, CountingRenderer]:
        rt, renderer = _runtime(db_url, redis_url, tmp_path, tiny_sd15, **kwargs)
        made.append(rt)
        return rt, renderer

    yield make
    for rt in made:
        rt.close()


def _queue(rt: WorkerRuntime, prompt: str, *, width: int = TINY_SIZE, user_id: int | None = None) -> uuid.UUID:
    async def go() -> uuid.UUID:
        async with rt.sessions() as session, session.begin():
            uid = user_id
            if uid is None:
                user = await upsert_user(session=session, discord_id=next(_discord_ids))
                await grant_credits(session=session, user_id=user.id, amount=10)
                uid = user.id
            spec = JobSpec(parts=(PromptPart(prompt),), width=width, height=TINY_SIZE, steps=TINY_STEPS)
            new = await create_job(session=session, user_id=uid, spec=spec, model="tiny", lane=Lane.FAST, cost=2)
            return new.job.id

    return rt.run(go())


def _state(rt: WorkerRuntime, job_id: uuid.UUID) -> tuple[JobStatus, int, int]:
    """(status, images, the owner's balance)."""

    async def go() -> tuple[JobStatus, int, int]:
        async with rt.sessions() as session:
            job = (await session.scalars(select(Job).where(Job.id == job_id))).one()
            images = len(list(await session.scalars(select(Image.id).where(Image.job_id == job_id))))
            balance = await session.scalar(select(User.balance).where(User.id == job.user_id))
            return job.status, images, int(balance or 0)

    return rt.run(go())


def test_queued_jobs_with_the_same_call_render_together_and_are_recorded_each(batching: Any) -> None:
    rt, renderer = batching(jobs=4)
    same = [_queue(rt, p) for p in ("a red fox", "a blue whale", "a green forest")]
    wider = _queue(rt, "a wide castle", width=2 * TINY_SIZE)
    assert render_job(rt, same[0]) is RenderOutcome.DONE
    assert renderer.batches == [3]
    for job_id in same:
        assert _state(rt, job_id) == (JobStatus.DONE, 4, 8)  # 10 granted, 2 captured
    assert _state(rt, wider)[0] is JobStatus.QUEUED  # another size: another call
    # The companions' own messages find their jobs taken and render what is still queued.
    assert render_job(rt, same[1]) is RenderOutcome.DONE
    assert _state(rt, wider)[:2] == (JobStatus.DONE, 4)
    assert render_job(rt, same[2]) is RenderOutcome.SKIPPED


def test_a_call_takes_each_members_oldest_job_first(batching: Any) -> None:
    rt, renderer = batching(jobs=3)
    first = _queue(rt, "one")
    owner = _state_owner(rt, first)
    burst = [_queue(rt, f"burst {n}", user_id=owner) for n in range(3)]
    other = _queue(rt, "someone else")
    render_job(rt, first)
    assert renderer.batches == [3]
    assert _state(rt, burst[0])[0] is JobStatus.DONE
    assert _state(rt, other)[0] is JobStatus.DONE  # ahead of the burst's later jobs
    assert [_state(rt, j)[0] for j in burst[1:]] == [JobStatus.QUEUED, JobStatus.QUEUED]


def _state_owner(rt: WorkerRuntime, job_id: uuid.UUID) -> int:
    async def go() -> int:
        async with rt.sessions() as session:
            return int((await session.scalar(select(Job.user_id).where(Job.id == job_id))) or 0)

    return rt.run(go())


def test_a_job_waits_at_most_the_window_for_companions(batching: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpu_worker.batching as batching_module

    looks: list[uuid.UUID] = []
    look = batching_module._companions

    async def counted(sessions: Any, job_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
        looks.append(job_id)
        return await look(sessions, job_id, limit)

    monkeypatch.setattr(batching_module, "_companions", counted)
    other, _ = batching(jobs=4)  # queues from another thread, on its own event loop
    rt, renderer = batching(jobs=4, window_ms=1500)
    lead = _queue(rt, "a red fox")
    queued: list[uuid.UUID] = []

    def queue_later() -> None:
        time.sleep(0.4)
        queued.append(_queue(other, "a blue whale"))

    thread = threading.Thread(target=queue_later)
    thread.start()
    started = time.monotonic()
    assert render_job(rt, lead) is RenderOutcome.DONE
    thread.join()
    # The job arriving 0.4 s later joined the call; the lead waited out its window (only one
    # companion came of the three it could take), and not longer.
    assert time.monotonic() - started >= 1.2
    assert renderer.batches == [2] and _state(rt, queued[0])[0] is JobStatus.DONE
    assert looks.count(lead) > 5  # it kept looking while it waited

    # A job that waited in the queue longer than the window does not wait again.
    old = _queue(rt, "an old job")
    rt.run(_age(rt, old))
    assert render_job(rt, old) is RenderOutcome.DONE
    assert renderer.batches == [2]  # nothing joined it: rendered alone
    assert looks.count(old) == 1  # one look at the queue, no wait


async def _age(rt: WorkerRuntime, job_id: uuid.UUID) -> None:
    from sqlalchemy import func, update

    async with rt.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(queued_at=func.now() - _seconds(5)))


def _seconds(n: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=n)


def test_a_call_that_fails_as_a_batch_renders_its_jobs_one_by_one(batching: Any) -> None:
    rt, renderer = batching(jobs=4)
    renderer.fail_batches = True
    jobs = [_queue(rt, p) for p in ("a red fox", "a blue whale")]
    assert render_job(rt, jobs[0]) is RenderOutcome.DONE
    assert renderer.batches == [2] and renderer.alone == 2
    assert [_state(rt, j)[:2] for j in jobs] == [(JobStatus.DONE, 4)] * 2


def test_a_model_that_does_not_batch_renders_each_job_alone(batching: Any) -> None:
    rt, renderer = batching(jobs=1)
    jobs = [_queue(rt, p) for p in ("a red fox", "a blue whale")]
    render_job(rt, jobs[0])
    assert renderer.batches == [] and renderer.alone == 1
    assert _state(rt, jobs[1])[0] is JobStatus.QUEUED
