"""The records a job passes through on a worker: claimed (:class:`ClaimedJob`, read once from
its row), rendered (:class:`RenderResult`: files already in the store), then recorded by
:mod:`gpu_worker.service` in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.spec import JobKind, JobSpec, Lane


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker claimed: what the render needs, read once from its row."""

    id: uuid.UUID
    kind: JobKind
    variant: str | None
    spec: JobSpec
    model: str
    lane: Lane
    seed: int
    attempts: int
    private: bool
    parent_id: uuid.UUID | None
    parent_index: int | None
    source_keys: tuple[str, ...] = ()
    """Storage keys of the source images (for jobs that start from an earlier image)."""
    stop_requested: bool = False
    """Its owner asked it to stop before this attempt claimed it."""
    waited_s: float = 0.0
    """Seconds it waited in the queue before this claim."""
    mask: bytes | None = None  # a drawn region's mask (PNG, white: repaint), from JobSpec.mask_id
    training: dict[str, Any] | None = None  # a training job's core.training.TrainingRequest, as stored
    training_pictures: tuple[bytes, ...] = ()  # and its pictures (training_pictures rows), in order


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One rendered image, already in the store."""

    index: int
    seed: int
    storage_key: str
    width: int
    height: int
    sha256: str
    nsfw_score: float | None
    nsfw: bool
    thumbnail_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoredLora:
    """A trained LoRA file, already in the store."""

    storage_key: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RenderResult:
    """What a render produced (files in the store, not yet recorded)."""

    images: tuple[StoredImage, ...]
    grid_storage_key: str | None
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds spent in each phase of the render (``operation``, ``moderation``, ``files``), for the log."""
    prompts: tuple[str, ...] | None = None
    """A describe job's prompts (it stores no images)."""
    lora: StoredLora | None = None
    """A training job's LoRA (its images are the LoRA's samples)."""
