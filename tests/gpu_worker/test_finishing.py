"""Finishing behind the next render (gpu_worker.finishing) on the real Postgres and Redis: a
job's scores, files and record are made on the finisher's thread while the next job renders,
and its end is what it would have been without one (done and charged, or retried and
published again, its lease dropped after)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch
from PIL import Image as PILImage

from core.settings import load_settings
from db.models import JobStatus, LedgerKind
from gpu_worker import finishing
from gpu_worker.finishing import Finisher
from gpu_worker.operations import Operated
from gpu_worker.records import ClaimedJob, RenderResult
from gpu_worker.service import RenderOutcome, WorkerRuntime, render_job
from gpu_worker.storing import Drawn
from gpu_worker.tasks import build_runtime
from tests.gpu_worker.test_tasks_service import (
    Published,
    StubRenderer,
    _images,
    _job,
    _ledger,
    _queue_job,
    cancel_other_tests_jobs,
)


class SplitRenderer(StubRenderer):
    """Draws at once; its ``keep`` (scores and files) waits for the test to let it go."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn: list[uuid.UUID] = []
        self.kept: list[uuid.UUID] = []
        self.go_on = threading.Event()
        self.keep_failures: list[BaseException] = []

    def draw(self, job: ClaimedJob) -> Drawn:
        self.drawn.append(job.id)
        images = [PILImage.new("RGB", (8, 8)) for _ in range(4)]
        done = Operated(images, SimpleNamespace(seeds=[job.seed + i for i in range(4)]), {})
        return Drawn(job, job.model, job.spec, done, grid=True, operation_s=0.01)

    def keep(self, drawn: Drawn) -> RenderResult:
        assert self.go_on.wait(20), "the test never let the finish go on"
        self.kept.append(drawn.job.id)
        if self.keep_failures:
            raise self.keep_failures.pop(0)
        return StubRenderer.__call__(self, drawn.job)


@pytest.fixture
def split() -> SplitRenderer:
    return SplitRenderer()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def behind(db_url: str, redis_url: str, split: SplitRenderer, published: Published) -> Iterator[WorkerRuntime]:
    settings = load_settings(database_url=db_url, redis_url=redis_url, finish_behind="on")
    rt = build_runtime(settings, published, renderer=split)
    assert rt.finisher is not None
    cancel_other_tests_jobs(rt)
    yield rt
    split.go_on.set()
    rt.close()


def test_a_job_is_finished_while_the_next_one_renders(behind: WorkerRuntime, split: SplitRenderer) -> None:
    first, _ = _queue_job(behind)
    second, _ = _queue_job(behind)
    assert render_job(behind, first) is RenderOutcome.RENDERED
    # Drawn, not finished: still running, its lease alive while the finisher holds it.
    assert _job(behind, first).status is JobStatus.RUNNING
    assert behind.leases.is_held(first)
    assert render_job(behind, second) is RenderOutcome.RENDERED
    # The second job was drawn while the first one's finish had not even begun its files.
    assert split.drawn == [first, second] and split.kept == []
    split.go_on.set()
    assert behind.finisher is not None and behind.finisher.drain(20)
    assert split.kept == [first, second]
    for job_id in (first, second):
        assert _job(behind, job_id).status is JobStatus.DONE
        assert [image.index for image in _images(behind, job_id)] == [0, 1, 2, 3]
        assert _ledger(behind, job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE]
        assert not behind.leases.is_held(job_id)


def test_a_failed_finish_is_retried_like_a_failed_render(
    behind: WorkerRuntime, split: SplitRenderer, published: Published
) -> None:
    job_id, _ = _queue_job(behind)
    split.keep_failures.append(OSError(28, "No space left on device"))
    split.go_on.set()
    assert render_job(behind, job_id) is RenderOutcome.RENDERED
    assert behind.finisher is not None and behind.finisher.drain(20)
    row = _job(behind, job_id)
    assert row.status is JobStatus.QUEUED and row.attempts == 1
    # Published again only once its lease was dropped, so that the next worker can take it.
    assert published == [(job_id, "fast", "tiny")]
    assert not behind.leases.is_held(job_id)
    assert render_job(behind, job_id) is RenderOutcome.RENDERED
    assert behind.finisher.drain(20)
    assert _job(behind, job_id).status is JobStatus.DONE


def test_closing_the_process_finishes_what_it_handed_over(
    behind: WorkerRuntime, split: SplitRenderer, db_url: str, redis_url: str
) -> None:
    job_id, _ = _queue_job(behind)
    assert render_job(behind, job_id) is RenderOutcome.RENDERED
    threading.Timer(0.3, split.go_on.set).start()
    started = time.monotonic()
    assert behind.finisher is not None
    behind.finisher.close()
    assert time.monotonic() - started >= 0.25  # it waited for the finish
    assert _job(behind, job_id).status is JobStatus.DONE


def test_a_stopped_or_failed_render_is_recorded_at_once(behind: WorkerRuntime, split: SplitRenderer) -> None:
    job_id, _ = _queue_job(behind)

    def broken(job: ClaimedJob) -> Drawn:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    split.draw = broken  # type: ignore[method-assign]
    assert render_job(behind, job_id) is RenderOutcome.RETRYING
    assert behind.finisher is not None and behind.finisher.pending == 0


def test_auto_turns_it_on_only_where_cuda_renders() -> None:
    assert finishing.wanted("auto") is torch.cuda.is_available()
    assert finishing.wanted("on") and not finishing.wanted("off")


def test_without_a_finisher_the_render_is_recorded_before_the_task_returns(
    db_url: str, redis_url: str, split: SplitRenderer, published: Published
) -> None:
    rt = build_runtime(load_settings(database_url=db_url, redis_url=redis_url, finish_behind="off"), published,
                       renderer=split)
    try:
        assert rt.finisher is None
        cancel_other_tests_jobs(rt)
        job_id, _ = _queue_job(rt)
        split.go_on.set()
        assert render_job(rt, job_id) is RenderOutcome.DONE
        assert split.drawn == []  # rendered through __call__, in one piece
        assert _job(rt, job_id).status is JobStatus.DONE
    finally:
        rt.close()


def test_a_finisher_that_cannot_finish_in_time_says_so(db_url: str) -> None:
    finisher = Finisher(db_url)
    gate = threading.Event()
    import contextlib

    job = SimpleNamespace(id=uuid.uuid4())
    finisher.submit(job, lambda context: gate.wait(5) and None, contextlib.ExitStack())  # type: ignore[arg-type]
    assert finisher.pending == 1
    assert finisher.drain(0.2) is False
    gate.set()
    assert finisher.drain(5) is True
    finisher.close()
