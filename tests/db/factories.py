"""Small builders for db tests."""

from __future__ import annotations

import itertools
import os

from core.spec import JobSpec, PromptPart

# Discord ids unique across tests and pytest processes, so committed rows never collide.
_ids = itertools.count(os.getpid() * 1_000_000)


def next_discord_id() -> int:
    """A Discord id (and interaction id) no other test uses."""
    return next(_ids)


def make_spec(prompt: str = "a lighthouse at dusk", seed: int | None = 1234) -> JobSpec:
    """A JobSpec as the prompt parser would produce it."""
    return JobSpec(parts=(PromptPart(prompt),), seed=seed)
