"""From a claimed job to images in the store: the renderer that :mod:`gpu_worker.service` calls.

:class:`JobRenderer` looks up the job's recipe (:mod:`core.kinds`; an unknown kind or
variant is a rejected job), gathers its source images, runs its operation
(:mod:`gpu_worker.operations`) on the model's pipeline from the warm
:class:`~gpu_worker.cache.PipelineCache` (a model loads the first time a job needs it),
and hands the images to :mod:`gpu_worker.storing`, which scores them for NSFW content beside
writing PNGs that carry their generation parameters (and the 2x2 grid of a grid recipe) into
the image store. It reads and writes files only: recording the result in Postgres is the
service's job, so a renderer can be tested and benchmarked without a database.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from core.kinds import Recipe, Source, UnknownRecipe, recipe
from core.minors import mentions_minor
from core.models import ModelCatalog, ModelEntry
from core.spec import JobSpec
from gpu_worker.control import ControlKit
from gpu_worker.failures import JobRejected
from gpu_worker.fetch import Fetch, ImageRejected, fetch_image, parse_networks
from gpu_worker.host import CpuShare
from gpu_worker.operations import OPERATIONS, OpContext, Operated
from gpu_worker.records import ClaimedJob, RenderResult, StoredLora
from gpu_worker.redis_progress import RedisProgress
from gpu_worker.stopping import StopWatch
from gpu_worker.store import ImageStore
from gpu_worker.storing import Classify, Drawn, store_batch, store_images
from gpu_worker.test_faults import slow_steps

logger = logging.getLogger(__name__)

NSFW_THRESHOLD = 0.5
"""Images scoring at least this are flagged NSFW (spoilered or withheld by the bot)."""


ProgressFactory = Callable[[ClaimedJob], Any]
"""Makes the diffusers step callback of a job (or None)."""


class JobRenderer:
    """Renders claimed jobs: operation, moderation, PNGs in the store, grid.

    Args:
        catalog: the models this worker serves.
        pipelines: the warm pipeline cache (models load lazily, on the first job).
        store: where image files go.
        classify: NSFW scores per image; None scores nothing (``nsfw_score`` stays empty).
        progress: makes each job's step callback; None reports no progress.
        threads: sets the CPU threads of each render (:class:`gpu_worker.host.CpuShare`);
            None leaves torch's setting alone (GPU workers).
    """

    def __init__(
        self,
        *,
        catalog: ModelCatalog,
        pipelines: Any,
        store: ImageStore,
        classify: Classify | None = None,
        progress: ProgressFactory | None = None,
        nsfw_threshold: float = NSFW_THRESHOLD,
        fetch: Fetch | None = None,
        threads: CpuShare | None = None,
        stops: StopWatch | None = None,
        training_root: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.pipelines = pipelines
        self.store = store
        self.classify = classify
        self.progress = progress
        self.nsfw_threshold = nsfw_threshold
        self.fetch = fetch
        self.threads = threads
        self.stops = stops
        self.training_root = training_root
        """Where training jobs keep their checkpoints (a temporary folder when None)."""
        self._upscalers: dict[str, Any] = {}
        self._captioners: dict[str, Any] = {}
        self._controls = ControlKit()

    @classmethod
    def from_settings(cls, settings: Any, *, redis_client: Any = None) -> JobRenderer:
        """The renderer of a worker process: catalog, cache, store, detector and progress from settings."""
        from core.models_file import load_catalog
        from gpu_worker.cache import PipelineCache
        from gpu_worker.moderation import open_detector
        from gpu_worker.store import open_store

        catalog = load_catalog(settings.models_file, data_dir=settings.data_dir)
        hosts = settings.allowed_image_hosts()
        private = parse_networks(settings.image_url_private_networks)
        return cls(
            catalog=catalog,
            pipelines=PipelineCache(catalog),
            store=open_store(settings),
            classify=open_detector(settings),
            progress=RedisProgress(redis_client) if redis_client is not None else None,
            fetch=lambda url: fetch_image(url, allowed_hosts=hosts, private_networks=private),
            threads=None if _has_cuda() else CpuShare.from_env(),
            stops=StopWatch(redis_client) if redis_client is not None else None,
            training_root=settings.data_dir / "training",
        )

    # -- the render -----------------------------------------------------------------------
    def __call__(self, job: ClaimedJob) -> RenderResult:
        """Render ``job`` and store its files (see the module docstring).

        Raises:
            JobRejected: the job can never run here (unknown model or LoRA, no source image).
            Exception: whatever the operation raised (the service decides about retries).
        """
        drawn = self.draw(job)
        return drawn if isinstance(drawn, RenderResult) else self.keep(drawn)

    def draw(self, job: ClaimedJob) -> Drawn | RenderResult:
        """The render of ``job`` up to its images (what :meth:`keep` scores and stores), or
        the whole result of a job that stores no images (``/describe``). Raises as
        :meth:`__call__` does."""
        entry = self._entry(job.model)
        spec = replace(job.spec, model=entry.name, seed=job.seed)
        for ref in spec.loras:
            try:
                self._trained_lora(ref) if ref.sha256 else entry.lora(ref.name)
            except KeyError as exc:
                raise JobRejected(str(exc.args[0])) from None
        try:
            found = recipe(job.kind, job.variant)
        except UnknownRecipe as exc:
            raise JobRejected(str(exc)) from None
        if found.source is Source.PROMPT:
            sources = [self._fetch(url) for url in spec.image_urls]
            self._screen_inputs(spec, sources)
        elif found.source is Source.TRAINING_SET:
            sources = [_opened(data, f"training picture {n + 1}").convert("RGB")
                       for n, data in enumerate(job.training_pictures)]
        else:
            sources = [self._load_source(key) for key in job.source_keys]
            if job.mask is not None:
                sources.append(_opened(job.mask, "the drawn mask"))
        references = None
        # A model with a style adapter reads an imagine's image prompts through it (what they show).
        semantic = bool(sources) and found.operation == "imagine" and not spec.controls and entry.style_adapter is not None
        if spec.style_refs or spec.character_refs or semantic:
            from gpu_worker.references import References

            style = [self._fetch(url) for url in spec.style_refs]
            character = [self._fetch(url) for url in spec.character_refs]
            self._screen_inputs(spec, [*style, *character])
            references = References(entry, style, character, image_prompts=sources if semantic else [])
            if semantic:
                sources = []
        if found.image_count is not None and not found.image_count[0] <= len(sources) <= found.image_count[1]:
            low, high = found.image_count
            raise JobRejected(f"{found.title} takes {low} to {high} images; this one has {len(sources)}")
        callback = slow_steps(job, self.progress(job) if self.progress is not None else None)
        if self.stops is not None:
            callback = self.stops.wrap(job.id, callback)
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads.threads())
        started = time.perf_counter()
        training = self._training(job, sources) if found.source is Source.TRAINING_SET else None
        done = self._operate(found, entry, spec, sources, callback, references, training)
        operated = time.perf_counter()
        if done.prompts is not None:
            return RenderResult(images=(), grid_storage_key=None, timings={"operation": operated - started},
                                prompts=done.prompts)
        return Drawn(job, entry.name, spec, done, grid=found.grid, operation_s=operated - started)

    def keep(self, drawn: Drawn) -> RenderResult:
        """Score and store what :meth:`draw` made (:mod:`gpu_worker.storing`); a training
        job's LoRA file goes into the store too."""
        job, done = drawn.job, drawn.done
        result = store_images(self.store, self.classify, self.nsfw_threshold, job, drawn.model, drawn.spec, done,
                              grid=drawn.grid)
        timings = {"operation": drawn.operation_s, **result.timings}
        if done.lora is not None:
            data = done.lora.path.read_bytes()
            # Stored as bytes (content type application/octet-stream): its key is its sha256.
            result = replace(result, lora=StoredLora(self.store.put(data, "application/octet-stream"),
                                                     done.lora.sha256, len(data)))
        return replace(result, timings=timings)

    def render_batch(self, jobs: Sequence[ClaimedJob]) -> list[RenderResult | BaseException]:
        """Render ``/imagine`` jobs of one model and batch key (:mod:`core.batching`) in one
        pipeline call (:func:`gpu_worker.ops.batch.imagine_batch`); each job's result, or
        what stopped it (:class:`~gpu_worker.stopping.JobStopped`, :class:`JobRejected`), in
        order. NSFW scores come from one detector call for every image.

        Raises:
            Exception: the call itself failed (every job shares the failure).
        """
        from gpu_worker.ops.batch import imagine_batch

        entry = self._entry(jobs[0].model)
        specs, callbacks = [], []
        for job in jobs:
            spec = replace(job.spec, model=entry.name, seed=job.seed)
            for ref in spec.loras:
                try:
                    self._trained_lora(ref) if ref.sha256 else entry.lora(ref.name)
                except KeyError as exc:
                    raise JobRejected(str(exc.args[0])) from None
            callback = slow_steps(job, self.progress(job) if self.progress is not None else None)
            specs.append(spec)
            callbacks.append(self.stops.wrap(job.id, callback) if self.stops is not None else callback)
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads.threads())
        started = time.perf_counter()
        with self.pipelines.job(specs[0], "text2img") as pipe:
            rendered = imagine_batch(pipe, specs, defaults=entry.defaults, callbacks=callbacks)
        operated = time.perf_counter()
        drawn = [(job, spec, Operated(outcome[0], outcome[1], {"Chaos": spec.chaos} if spec.chaos else {}))
                 for job, spec, outcome in zip(jobs, specs, rendered, strict=True)
                 if not isinstance(outcome, BaseException)]
        stored = iter(store_batch(self.store, self.classify, self.nsfw_threshold, entry.name, drawn))
        results: list[RenderResult | BaseException] = []
        for outcome in rendered:
            if isinstance(outcome, BaseException):
                results.append(outcome)
                continue
            result = next(stored)
            results.append(replace(result, timings={"operation": operated - started, **result.timings}))
        return results

    def _trained_lora(self, ref: Any) -> None:
        """A member's trained LoRA, fetched once from the store into the local folder (checked
        against its sha256) and made nameable by the pipeline cache."""
        from core.models import LoraEntry
        from gpu_worker.purging import local_loras_dir

        # Removed again when the LoRA is deleted (gpu_worker.purging).
        root = local_loras_dir((self.training_root or Path(tempfile.gettempdir()) / "imaginarium-training").parent)
        path = root / f"{ref.sha256}.safetensors"
        if not path.is_file():
            try:
                data = self.store.get(ref.storage_key)
            except (KeyError, FileNotFoundError):
                raise JobRejected(f"the LoRA {ref.name!r} is no longer stored") from None
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise JobRejected(f"the stored LoRA {ref.name!r} does not match its checksum")
            root.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(path)
        self.pipelines.add_trained_lora(LoraEntry(name=f"trained-{ref.sha256[:16]}", path=path, sha256=ref.sha256))

    def _training(self, job: ClaimedJob, pictures: list[Image.Image]) -> Any:
        """A training job's context (:func:`gpu_worker.ops.train_lora.training_context`)."""
        from gpu_worker.ops.train_lora import training_context

        root = self.training_root or Path(tempfile.gettempdir()) / "imaginarium-training"
        return training_context(job, pictures, classify=self.classify, threshold=self.nsfw_threshold, root=root,
                                progress=getattr(self.progress, "training", None), stops=self.stops)

    def _screen_inputs(self, spec: JobSpec, sources: list[Image.Image]) -> None:
        """Score the images a member gave before any reaches the pipeline: an explicit image
        with a prompt that refers to a minor is refused (:func:`core.minors.mentions_minor`)."""
        if self.classify is None or not sources:
            return
        scores = list(self.classify(sources))
        if any(score >= self.nsfw_threshold for score in scores) and mentions_minor(spec.prompt):
            raise JobRejected(
                "an image you gave is explicit and the prompt refers to a minor, which is never allowed"
            )

    def _fetch(self, url: str) -> Image.Image:
        if self.fetch is None:
            raise JobRejected("this worker cannot fetch images from links")
        try:
            return self.fetch(url)
        except ImageRejected as exc:
            raise JobRejected(str(exc)) from None

    def _entry(self, name: str) -> ModelEntry:
        try:
            return self.catalog.get(name)
        except KeyError as exc:
            raise JobRejected(str(exc.args[0])) from None

    def _load_source(self, key: str) -> Image.Image:
        try:
            data = self.store.get(key)
        except (KeyError, FileNotFoundError):
            raise JobRejected("the image this job starts from is no longer stored") from None
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.convert("RGB")

    def _operate(
        self,
        found: Recipe,
        entry: ModelEntry,
        spec: JobSpec,
        sources: list[Image.Image],
        callback: Any,
        references: Any = None,
        training: Any = None,
    ) -> Operated:
        """Run the operation of the job's recipe on the model's pipeline."""
        operation = OPERATIONS.get(found.operation)
        if operation is None:
            raise JobRejected(f"this worker cannot render {found.title} jobs")
        context = OpContext(
            recipe=found,
            spec=spec,
            defaults=entry.defaults,
            sources=sources,
            pipelines=self.pipelines,
            callback=callback,
            upscaler=lambda: self._upscaler(entry),
            captioner=lambda: self._captioner(entry),
            references=references,
            controls=lambda pipe: self._controls.call(entry, pipe, spec.controls, sources, (spec.width, spec.height)),
            training=training,
        )
        return operation(context)

    def _upscaler(self, entry: ModelEntry) -> Any:
        if entry.upscaler is None:
            return None
        if entry.name not in self._upscalers:
            from gpu_worker.ops.upscale import load_upscaler

            self._upscalers[entry.name] = load_upscaler(entry.upscaler, entry.upscaler_sha256)
        return self._upscalers[entry.name]

    def _captioner(self, entry: ModelEntry) -> Any:
        if entry.captioner is None:
            return None
        if entry.name not in self._captioners:
            from gpu_worker.captioning import load_captioner

            self._captioners[entry.name] = load_captioner(entry, device=_captioner_device())
        return self._captioners[entry.name]


def _opened(data: bytes, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        raise JobRejected(f"{what} is not a readable picture") from None
    return image


def _captioner_device() -> Any:
    return "cuda" if _has_cuda() else None


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
