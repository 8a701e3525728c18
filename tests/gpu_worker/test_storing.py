"""gpu_worker.storing: NSFW scores are taken beside the file writes, and a job's result waits
for both (no model here: the images are drawn with Pillow)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from PIL import Image

from core.spec import JobKind, JobSpec, Lane, PromptPart
from gpu_worker.operations import Operated
from gpu_worker.records import ClaimedJob
from gpu_worker.storing import store_batch, store_images
from tests.gpu_worker.test_tasks_rendering import DictStore


def _job(seed: int = 7) -> ClaimedJob:
    spec = JobSpec(parts=(PromptPart("a red circle"),), width=32, height=32, steps=4, cfg=3.0, seed=seed)
    return ClaimedJob(id=uuid.uuid4(), kind=JobKind.IMAGINE, variant=None, spec=spec, model="m", lane=Lane.FAST,
                      seed=seed, attempts=1, private=False, parent_id=None, parent_index=None, source_keys=())


def _done(count: int = 4, seed: int = 7) -> Operated:
    images = [Image.new("RGB", (32, 32), (40 * i, 200 - 40 * i, 90)) for i in range(count)]
    settings = SimpleNamespace(seeds=[seed + i for i in range(count)], width=32, height=32, steps=4, cfg=3.0,
                               sampler="Euler", negative_prompt="", clip_skip=None)
    return Operated(images, settings, {})


class SlowStore(DictStore):
    """Writes that wait until the detector has started (and say when they happened)."""

    def __init__(self, scoring_started: threading.Event) -> None:
        super().__init__()
        self.scoring_started = scoring_started

    def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        assert self.scoring_started.wait(10), "a write waited for a detector that never started"
        return super().put(data, content_type, suffix=suffix)


def test_the_detector_scores_while_the_files_are_written() -> None:
    started, writes_done = threading.Event(), threading.Event()
    store = SlowStore(started)

    def classify(images: Sequence[Image.Image]) -> list[float]:
        started.set()
        # Sequential scoring-then-writing (or writing-then-scoring) never gets past this.
        assert writes_done.wait(10), "the files were not written while the detector ran"
        return [0.9 if i == 1 else 0.1 for i in range(len(images))]

    original = store.put

    def put(data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        key = original(data, content_type, suffix=suffix)
        if len(store.files) == 9:  # four PNGs, four thumbnails, the grid
            writes_done.set()
        return key

    store.put = put  # type: ignore[method-assign]
    result = store_images(store, classify, 0.5, _job(), "m", _job().spec, _done(), grid=True)
    assert [image.nsfw for image in result.images] == [False, True, False, False]
    assert [image.nsfw_score for image in result.images] == [0.1, 0.9, 0.1, 0.1]
    assert all(store.exists(image.storage_key) and store.exists(image.thumbnail_key or "") for image in result.images)
    assert result.grid_storage_key is not None and store.exists(result.grid_storage_key)
    assert set(result.timings) == {"moderation", "files"}


def test_a_failing_detector_fails_the_render_after_the_writes_ended() -> None:
    store = DictStore()

    def classify(images: Sequence[Image.Image]) -> list[float]:
        raise RuntimeError("detector missing")

    with pytest.raises(RuntimeError, match="detector missing"):
        store_images(store, classify, 0.5, _job(), "m", _job().spec, _done(), grid=True)
    # Nothing is left writing behind the error: every file went in before it was raised.
    assert len(store.files) == 9


def test_a_failing_write_fails_the_render() -> None:
    class FullStore(DictStore):
        def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        store_images(FullStore(), lambda images: [0.0] * len(images), 0.5, _job(), "m", _job().spec, _done(),
                     grid=True)


def test_a_detector_that_scores_fewer_images_than_it_was_given_fails_the_render() -> None:
    with pytest.raises(RuntimeError, match="scored 1 of 4"):
        store_images(DictStore(), lambda images: [0.0], 0.5, _job(), "m", _job().spec, _done(), grid=True)


def test_without_a_detector_scores_stay_empty() -> None:
    result = store_images(DictStore(), None, 0.5, _job(), "m", _job().spec, _done(), grid=False)
    assert [image.nsfw_score for image in result.images] == [None] * 4
    assert result.grid_storage_key is None


def test_a_batch_is_scored_in_one_detector_call_and_each_job_gets_its_own_scores() -> None:
    calls: list[int] = []

    def classify(images: Sequence[Image.Image]) -> list[float]:
        calls.append(len(images))
        return [i / 10 for i in range(len(images))]

    jobs = [(_job(seed), _job(seed).spec, _done(4, seed)) for seed in (1, 2)]
    first, second = store_batch(DictStore(), classify, 0.5, "m", jobs)
    assert calls == [8]
    assert [image.nsfw_score for image in first.images] == [0.0, 0.1, 0.2, 0.3]
    assert [image.nsfw_score for image in second.images] == [0.4, 0.5, 0.6, 0.7]
    assert [image.nsfw for image in second.images] == [False, True, True, True]
    assert [image.seed for image in second.images] == [2, 3, 4, 5]
