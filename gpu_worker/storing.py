"""From rendered images to files in the image store with their NSFW scores, with the
detector off the files' path (:class:`gpu_worker.rendering.JobRenderer` calls it).

- :func:`start_scoring` hands every image of a pipeline call to the detector in one batch,
  on a thread of its own, as soon as the images exist;
- meanwhile :func:`write_files` has a pool of writer threads encode each image's PNG (its
  parameters in the text chunk), its WebP thumbnail and the 2x2 grid and put them in the
  store, all at once: the encoders compress without the GIL (a 1024x1024 PNG takes tens of
  milliseconds, the grid four times that) and the writes wait on the disk (a local store
  fsyncs each file) or the network (an S3 store makes one request per file), not on a core;
- :func:`with_scores` waits for both and makes the result. A job's record therefore never
  points at a file that is not written nor carries a score that was not taken; a failure of
  either (a full disk, a detector that does not load) fails the render as before.

The threads are made on first use in the process that renders (never in a parent that forks
pool processes afterwards).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.spec import JobSpec
from gpu_worker.operations import Operated
from gpu_worker.records import ClaimedJob, RenderResult, StoredImage
from gpu_worker.store import ImageStore

Classify = Callable[[Sequence[Image.Image]], list[float]]
"""NSFW scores of images, in order (:mod:`gpu_worker.moderation`)."""

WRITER_THREADS = 8
"""Store writes in flight at once (a job writes nine files: four PNGs, four thumbnails, a grid)."""

_LOCK = threading.Lock()
_POOLS: dict[str, tuple[int, ThreadPoolExecutor]] = {}


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    """This process's pool ``name`` (one made before a fork is not reused after it)."""
    with _LOCK:
        found = _POOLS.get(name)
        if found is None or found[0] != os.getpid():
            found = (os.getpid(), ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name))
            _POOLS[name] = found
        return found[1]


@dataclass(frozen=True, slots=True)
class Scoring:
    """NSFW scores being taken (or none to take)."""

    future: Future[tuple[list[float], float]] | None
    count: int

    def result(self) -> tuple[list[float | None], float]:
        """The scores in image order (None each when nothing scores) and the detector's seconds."""
        if self.future is None:
            return [None] * self.count, 0.0
        scores, seconds = self.future.result()
        if len(scores) != self.count:
            raise RuntimeError(f"the NSFW detector scored {len(scores)} of {self.count} images")
        return list(scores), seconds


def start_scoring(classify: Classify | None, images: Sequence[Image.Image]) -> Scoring:
    """Score ``images`` on the detector's thread; None or no images score nothing."""
    if classify is None or not images:
        return Scoring(None, len(images))
    batch = list(images)

    def score() -> tuple[list[float], float]:
        started = time.perf_counter()
        found = list(classify(batch))
        return found, time.perf_counter() - started

    return Scoring(_pool("nsfw", 1).submit(score), len(batch))


@dataclass(frozen=True, slots=True)
class Drawn:
    """A job's images as its operation returned them, not yet scored or stored."""

    job: ClaimedJob
    model: str
    spec: JobSpec
    done: Operated
    grid: bool
    operation_s: float


@dataclass(frozen=True, slots=True)
class PendingImage:
    """One image's files, being encoded and written."""

    index: int
    seed: int
    width: int
    height: int
    png: Future[tuple[str, str]]
    """The PNG's storage key and sha256."""
    thumbnail: Future[str]


@dataclass(frozen=True, slots=True)
class Files:
    """A job's files, being encoded and written: its images and its grid."""

    images: tuple[PendingImage, ...]
    grid: Future[str] | None
    started: float

    def futures(self) -> list[Future[Any]]:
        """Every encode-and-write of the job."""
        found: list[Future[Any]] = [f for image in self.images for f in (image.png, image.thumbnail)]
        return [*found, self.grid] if self.grid is not None else found


def write_files(
    store: ImageStore, job: ClaimedJob, model: str, spec: JobSpec, done: Operated, *, grid: bool
) -> Files:
    """Start encoding and writing ``done``'s images (and the grid of a grid recipe) on the
    writer threads (Pillow's PNG and WebP encoders release the GIL while they compress)."""
    from core.thumbnails import thumbnail_webp
    from gpu_worker.images import compose_grid, encode_png, parameters_for

    started, writers = time.perf_counter(), _pool("store", WRITER_THREADS)

    def put_png(image: Image.Image, text: str) -> tuple[str, str]:
        png = encode_png(image, text)
        return store.put(png), hashlib.sha256(png).hexdigest()

    def put_thumbnail(image: Image.Image) -> str:
        return store.put(thumbnail_webp(image), "image/webp")

    def put_grid(text: str) -> str:
        return store.put(encode_png(compose_grid(done.images), text))

    seeds = list(done.settings.seeds)
    pending = []
    for index, image in enumerate(done.images):
        seed = seeds[index] if index < len(seeds) else job.seed + index
        text = parameters_for(spec, done.settings, seed=seed, model=model, extra=done.extra)
        pending.append(PendingImage(
            index=index, seed=seed, width=image.width, height=image.height,
            png=writers.submit(put_png, image, text),
            thumbnail=writers.submit(put_thumbnail, image),
        ))
    grid_key = None
    if grid and len(done.images) > 1:
        text = parameters_for(spec, done.settings, seed=seeds[0], model=model, extra=done.extra)
        grid_key = writers.submit(put_grid, text)
    return Files(tuple(pending), grid_key, started)


def with_scores(files: Files, scores: Sequence[float | None], threshold: float, *, timings: dict[str, float]) -> RenderResult:
    """The job's result once its files are written (raises what a write raised)."""
    keys = [(*image.png.result(), image.thumbnail.result()) for image in files.images]
    grid_key = files.grid.result() if files.grid is not None else None
    stored = tuple(
        StoredImage(
            index=image.index, seed=image.seed, storage_key=png, width=image.width, height=image.height,
            sha256=sha256, nsfw_score=score, nsfw=score is not None and score >= threshold,
            thumbnail_key=thumbnail,
        )
        for image, (png, sha256, thumbnail), score in zip(files.images, keys, scores, strict=True)
    )
    return RenderResult(images=stored, grid_storage_key=grid_key, timings=timings)


def store_images(
    store: ImageStore, classify: Classify | None, threshold: float, job: ClaimedJob, model: str, spec: JobSpec,
    done: Operated, *, grid: bool,
) -> RenderResult:
    """One job's images scored and stored (the detector beside the writes)."""
    scoring = start_scoring(classify, done.images)
    files = write_files(store, job, model, spec, done, grid=grid)
    scores, timings = _settled(scoring, [files])
    return with_scores(files, scores, threshold, timings=timings)


def _settled(scoring: Scoring, written: Sequence[Files]) -> tuple[list[float | None], dict[str, float]]:
    """The scores once every write of ``written`` has ended (a failing detector never leaves
    writes running behind its error), and the timings: ``files`` (from encoding to the last
    write) and ``moderation`` (the detector's own seconds, beside the files')."""
    for files in written:
        for future in files.futures():
            future.exception()  # waits; what a write raised is raised by with_scores
    files_s = time.perf_counter() - written[0].started if written else 0.0
    scores, seconds = scoring.result()
    return scores, {"moderation": seconds, "files": files_s}


def store_batch(
    store: ImageStore, classify: Classify | None, threshold: float, model: str,
    jobs: Sequence[tuple[ClaimedJob, JobSpec, Operated]],
) -> list[RenderResult]:
    """The images of several jobs drawn in one call: scored in one detector batch beside
    every job's writes; each job's result in order."""
    scoring = start_scoring(classify, [image for _, _, done in jobs for image in done.images])
    written = [write_files(store, job, model, spec, done, grid=True) for job, spec, done in jobs]
    scores, timings = _settled(scoring, written)
    results = []
    for files in written:
        own, scores = scores[: len(files.images)], scores[len(files.images) :]
        results.append(with_scores(files, own, threshold, timings=timings))
    return results
