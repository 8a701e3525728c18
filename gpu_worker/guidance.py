"""Guidance from ``--cfg`` or the model's default, with Midjourney's ``--stylize`` applied."""

from __future__ import annotations

from core.spec import JobSpec

STYLIZE_DEFAULT = 100
"""Midjourney's default ``--stylize``; it leaves the model's guidance scale unchanged."""
STYLIZE_MAX = 1000
STYLIZE_LOW_FACTOR = 1.25
"""Guidance multiplier at ``--stylize 0`` (follow the prompt more literally)."""
STYLIZE_HIGH_FACTOR = 0.6
"""Guidance multiplier at ``--stylize 1000`` (let the model's own style lead)."""
MIN_GUIDANCE = 1.5
"""Stylize never lowers guidance below this (at 1.0 classifier-free guidance switches off)."""


def guidance_for(spec: JobSpec, model_default_cfg: float) -> float:
    """The classifier-free guidance scale for a job, with ``--stylize`` applied.

    ``--cfg`` given explicitly wins. Otherwise the model's default guidance is multiplied
    by a factor that falls linearly from 1.25 at ``--stylize 0`` to 1.0 at the default 100,
    then linearly to 0.6 at 1000:

    - ``s <= 100``: ``factor = 1.25 - 0.25 * s / 100``
    - ``s > 100``:  ``factor = 1.0 - 0.4 * (s - 100) / 900``

    so with a default of 7.0, ``--s 0`` gives 8.75, ``--s 250`` 6.53 and ``--s 1000`` 4.2.
    Lower guidance lets the model's learned aesthetics lead over the literal prompt, which is
    what a higher Midjourney stylize does. The result is never pushed below 1.5 by stylize
    (at 1.0 guidance switches off). Models distilled to run without guidance (a default of
    1.0 or less, e.g. Turbo and LCM) ignore stylize.

    Args:
        spec: the job; ``cfg`` and ``stylize`` are used.
        model_default_cfg: the guidance scale the model catalog gives for the model.

    Returns:
        The guidance scale to pass to the pipeline, rounded to two decimals.
    """
    if spec.cfg is not None:
        return float(spec.cfg)
    if model_default_cfg <= 1.0:
        return float(model_default_cfg)
    s = min(max(spec.stylize, 0), STYLIZE_MAX)
    if s <= STYLIZE_DEFAULT:
        factor = STYLIZE_LOW_FACTOR - (STYLIZE_LOW_FACTOR - 1.0) * s / STYLIZE_DEFAULT
    else:
        factor = 1.0 - (1.0 - STYLIZE_HIGH_FACTOR) * (s - STYLIZE_DEFAULT) / (STYLIZE_MAX - STYLIZE_DEFAULT)
    scaled = model_default_cfg * factor
    return round(max(scaled, min(MIN_GUIDANCE, model_default_cfg)), 2)
