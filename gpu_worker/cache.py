"""Pipelines kept loaded between jobs, within a memory budget.

A worker serves a few models; loading one takes seconds to minutes, so loaded pipelines
stay in a :class:`PipelineCache` and the least recently used one is dropped when a new one
would not fit. Image-to-image and inpainting pipelines are derived from the loaded
text-to-image pipeline with ``from_pipe``: they share its modules, so they cost no memory.
LoRAs are loaded into a pipeline once and switched on per job (:meth:`PipelineCache.job`).
"""

from __future__ import annotations

import enum
import gc
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from core.models import LoraEntry, ModelCatalog, ModelEntry
from core.spec import JobSpec
from gpu_worker.ops.common import PipelineTask, as_task
from gpu_worker.registry import (
    ModelLoadError,
    adapter_name,
    estimate_entry_bytes,
    load_lora,
    load_pipeline,
    module_bytes,
)

log = logging.getLogger(__name__)

Loader = Callable[[ModelEntry], DiffusionPipeline]


class LoadState(enum.Enum):
    """Where a model of the catalog stands in this worker's cache."""

    NOT_LOADED = "not_loaded"
    """Never loaded by this process (its files may or may not be on disk)."""
    LOADING = "loading"
    """A thread is loading it now; other threads asking for it wait for that load."""
    LOADED = "loaded"
    """In memory and ready: jobs get it without loading."""
    FAILED = "failed"
    """The last load raised; the next request tries again (the error is kept for status)."""
    EVICTED = "evicted"
    """Was loaded, then dropped to make room for another model; the next request reloads it."""


@dataclass
class _Slot:
    entry: ModelEntry
    state: LoadState = LoadState.NOT_LOADED
    pipe: DiffusionPipeline | None = None
    derived: dict[str, DiffusionPipeline] = field(default_factory=dict)
    nbytes: int = 0
    error: str | None = None
    in_use: int = 0
    # Adapter names loaded into the pipeline, least recently used first.
    loras: OrderedDict[str, None] = field(default_factory=OrderedDict)
    job_lock: threading.Lock = field(default_factory=threading.Lock)


def default_memory_budget() -> int:
    """Bytes of model weights a worker may keep loaded: 70 % of GPU memory, else 50 % of RAM.

    The remainder is for activations (which grow with image size and batch) and, on the
    CPU, for everything else on the machine.
    """
    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory * 0.7)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class PipelineCache:
    """Loaded pipelines by model name, least recently used evicted first.

    Args:
        catalog: the models this worker may load.
        memory_budget_bytes: weights kept loaded at most (estimated from parameter bytes);
            None uses :func:`default_memory_budget`. The model a job needs is always loaded,
            even alone over budget.
        loader: loads a pipeline for an entry (default :func:`gpu_worker.registry.load_pipeline`).
        max_loras_per_model: LoRA adapters kept loaded per pipeline; the least recently
            used is deleted beyond that.

    Loads and evictions happen under one lock, so two threads asking for the same model
    load it once. Jobs on the same pipeline run one at a time (:meth:`job` holds the
    model's job lock), because a job switches the pipeline's LoRAs and scheduler.
    """

    def __init__(
        self,
        catalog: ModelCatalog,
        *,
        memory_budget_bytes: int | None = None,
        loader: Loader = load_pipeline,
        max_loras_per_model: int = 8,
    ) -> None:
        self.catalog = catalog
        self.memory_budget_bytes = (
            default_memory_budget() if memory_budget_bytes is None else memory_budget_bytes
        )
        self._loader = loader
        self._max_loras = max_loras_per_model
        self._trained: dict[str, LoraEntry] = {}
        self._lock = threading.RLock()
        self._loaded_cond = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {}
        # Model names, least recently used first.
        self._lru: OrderedDict[str, None] = OrderedDict()

    def state(self, name: str | None) -> LoadState:
        """The load state of a model (None: the default model)."""
        entry = self.catalog.get(name)
        with self._lock:
            slot = self._slots.get(entry.name)
            return slot.state if slot else LoadState.NOT_LOADED

    def last_error(self, name: str | None) -> str | None:
        """The message of a model's last failed load, if its state is ``FAILED``."""
        entry = self.catalog.get(name)
        with self._lock:
            slot = self._slots.get(entry.name)
            return slot.error if slot else None

    def loaded(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return list(self._lru)

    def used_bytes(self) -> int:
        """Estimated bytes of the loaded models' weights."""
        with self._lock:
            return sum(self._slots[name].nbytes for name in self._lru)

    def get(self, name: str | None, task: PipelineTask = "text2img") -> DiffusionPipeline:
        """The pipeline of a model for a task, loading the model if needed.

        Args:
            name: the model name (None: the catalog's default).
            task: ``"text2img"``, ``"img2img"`` or ``"inpaint"``; the latter two are derived
                from the text-to-image pipeline with ``from_pipe`` and share its modules.

        Raises:
            KeyError: unknown model name.
            ModelLoadError: the model failed to load.
        """
        entry = self.catalog.get(name)
        with self._lock:
            slot = self._ensure_loaded(entry)
            return self._derive(slot, task)

    def evict(self, name: str) -> bool:
        """Drop a loaded model (unless a job is using it). Returns whether it was dropped."""
        entry = self.catalog.get(name)
        with self._lock:
            slot = self._slots.get(entry.name)
            if slot is None or slot.state is not LoadState.LOADED or slot.in_use:
                return False
            self._drop(slot)
        _release_memory()
        return True

    def add_trained_lora(self, lora: LoraEntry) -> None:
        """Make a member's trained LoRA (a local file with its sha256) nameable by jobs whose
        :class:`~core.spec.LoraRef` carries that sha256."""
        assert lora.sha256 is not None
        with self._lock:
            self._trained[lora.sha256] = lora

    @contextmanager
    def job(self, spec: JobSpec, task: PipelineTask = "text2img") -> Iterator[DiffusionPipeline]:
        """The pipeline for one job, with the spec's LoRAs switched on at their weights.

        The LoRAs are loaded into the pipeline the first time (and kept: loading costs
        more than switching), activated with ``set_adapters`` for the job, and switched off
        when the block exits, also on error, so the next job renders with the base model.

        Args:
            spec: the job; ``model`` and ``loras`` are used.
            task: which pipeline the job needs (see :meth:`get`).

        Raises:
            KeyError: unknown model, or a LoRA the model does not offer.
            ModelLoadError: the model or a LoRA failed to load.
        """
        entry = self.catalog.get(spec.model)
        wanted = [(self._trained[ref.sha256] if ref.sha256 else entry.lora(ref.name), ref.weight) for ref in spec.loras]
        with self._lock:
            slot = self._ensure_loaded(entry)
            slot.in_use += 1
        try:
            with slot.job_lock:
                assert slot.pipe is not None
                base = slot.pipe
                with self._lock:
                    pipe = self._derive(slot, task)
                    names = [self._ensure_lora(slot, lora) for lora, _ in wanted]
                if names:
                    base.enable_lora()
                    base.set_adapters(names, adapter_weights=[w for _, w in wanted])
                try:
                    yield pipe
                finally:
                    if slot.loras:
                        # Disabling (rather than deleting) keeps the weights for the next job
                        # that names the LoRA; disabled adapters leave outputs bit-identical.
                        base.disable_lora()
        finally:
            with self._lock:
                slot.in_use -= 1

    # -- internals (called with self._lock held) ------------------------------------------

    def _ensure_loaded(self, entry: ModelEntry) -> _Slot:
        slot = self._slots.setdefault(entry.name, _Slot(entry))
        while slot.state is LoadState.LOADING:
            self._loaded_cond.wait()
        if slot.state is LoadState.LOADED:
            self._lru.move_to_end(entry.name)
            return slot
        self._make_room(estimate_entry_bytes(entry), keep=entry.name)
        slot.state, slot.error = LoadState.LOADING, None
        try:
            # The load itself runs without the lock so that status queries and jobs on
            # other, already loaded models are not blocked for the minutes it may take.
            self._lock.release()
            try:
                pipe = self._loader(entry)
            finally:
                self._lock.acquire()
        except Exception as exc:
            slot.state, slot.error = LoadState.FAILED, str(exc)
            self._loaded_cond.notify_all()
            if isinstance(exc, ModelLoadError):
                raise
            raise ModelLoadError(f"model {entry.name!r}: loading failed: {exc}") from exc
        slot.pipe, slot.derived, slot.loras = pipe, {}, OrderedDict()
        slot.nbytes = module_bytes(pipe)
        slot.state = LoadState.LOADED
        self._lru[entry.name] = None
        self._loaded_cond.notify_all()
        self._make_room(0, keep=entry.name)
        log.info("loaded model %s (%.1f MiB)", entry.name, slot.nbytes / 2**20)
        return slot

    def _derive(self, slot: _Slot, task: PipelineTask) -> DiffusionPipeline:
        assert slot.pipe is not None
        if task == "text2img":
            return slot.pipe
        if task not in slot.derived:
            slot.derived[task] = as_task(slot.pipe, task)
        return slot.derived[task]

    def _ensure_lora(self, slot: _Slot, lora: Any) -> str:
        assert slot.pipe is not None
        name = adapter_name(lora)
        if name in slot.loras:
            slot.loras.move_to_end(name)
            return name
        while len(slot.loras) >= self._max_loras:
            oldest, _ = slot.loras.popitem(last=False)
            slot.pipe.delete_adapters(oldest)
        load_lora(slot.pipe, lora)
        slot.loras[name] = None
        slot.nbytes = module_bytes(slot.pipe)
        return name

    def _make_room(self, incoming: int, *, keep: str) -> None:
        dropped = False
        for name in list(self._lru):
            used = sum(self._slots[n].nbytes for n in self._lru if n != keep)
            keep_bytes = self._slots[keep].nbytes if keep in self._lru else 0
            if used + keep_bytes + incoming <= self.memory_budget_bytes:
                break
            slot = self._slots[name]
            if name == keep or slot.in_use:
                continue
            log.info("evicting model %s to make room", name)
            self._drop(slot)
            dropped = True
        if dropped:
            _release_memory()

    def _drop(self, slot: _Slot) -> None:
        slot.pipe, slot.derived, slot.loras, slot.nbytes = None, {}, OrderedDict(), 0
        slot.state = LoadState.EVICTED
        self._lru.pop(slot.entry.name, None)


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
