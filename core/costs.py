"""What a job costs in credits, known before it runs.

One credit is one standard render: four images at the model's native pixel budget with its
default steps. Costs scale with the work a GPU does: pixels x steps x images, rounded up,
never below one credit. The relax lane is free where a guild allows it.
"""

from __future__ import annotations

import math

from core.kinds import Recipe, recipe
from core.spec import JobKind, JobSpec, Lane

LARGE_JOB_CREDITS = 4
"""Jobs at or above this cost are shown to the user with their price before they run."""


def job_cost(
    spec: JobSpec,
    *,
    kind: JobKind | Recipe = JobKind.IMAGINE,
    lane: Lane = Lane.FAST,
    pixel_budget: int = 512 * 512,
    default_steps: int = 20,
) -> int:
    """Credits for one job (``--repeat`` is charged per created job, not here).

    Args:
        spec: the parsed prompt.
        kind: the job's recipe (:mod:`core.kinds`, which holds its cost factor), or a kind
            without variants.
        lane: relax is free.
        pixel_budget: the model's native pixel budget (one credit at this size).
        default_steps: the model's default steps (one credit at this many steps).
    """
    if lane is Lane.RELAX:
        return 0
    pixels = (spec.width * spec.height) / max(pixel_budget, 1)
    steps = (spec.steps or default_steps) / max(default_steps, 1)
    factor = kind.cost_factor if isinstance(kind, Recipe) else recipe(kind).cost_factor
    work = factor * max(pixels, 0.25) * max(steps, 0.25) * max(spec.quality, 0.25)
    # Tolerate float noise so an exactly-standard job costs 1, not 2.
    return max(1, math.ceil(work - 1e-9))


def is_large(cost: int) -> bool:
    """Whether to show the price before running."""
    return cost >= LARGE_JOB_CREDITS
