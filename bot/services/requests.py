"""Who asks for jobs and what they got: the plain records the submit path passes around."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from core.costs import is_large
from core.spec import JobKind, JobSpec, Lane


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks, from where, through which interaction (all Discord ids)."""

    user_id: int
    guild_id: int | None = None
    channel_id: int | None = None
    role_ids: tuple[int, ...] = ()
    interaction_id: int | None = None
    interaction_token: str | None = None
    interaction_created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An image the user attached (already uploaded to Discord)."""

    url: str
    filename: str
    content_type: str | None
    size: int


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One job a request queued."""

    job_id: uuid.UUID
    kind: JobKind
    variant: str | None
    spec: JobSpec
    model: str
    lane: Lane
    cost: int
    position: int
    """1 = the next job a worker for this model takes."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What a request queued."""

    jobs: tuple[QueuedJob, ...]
    created: bool
    """False when this interaction had been handled already (nothing new was queued)."""
    balance: int
    """The user's credits after the hold."""

    @property
    def total_cost(self) -> int:
        return sum(job.cost for job in self.jobs)

    @property
    def large(self) -> bool:
        """Whether the cost is large enough to show it to the user prominently."""
        return is_large(self.total_cost)
