"""The job planner shared by the bot and the command line: a prompt to sized, priced jobs.

:func:`plan_prompt` expands permutations, picks each job's model, sizes the job at that
model's pixel budget and size step, and lets the caller fill in what it knows beyond the
prompt (a member's saved defaults, a server's allowed models); :func:`price` is what such
a job costs. The bot (``bot/services/submit.py``) adds what needs the database (lanes,
caps, credits); ``imaginarium imagine`` queues the one job it plans for a local user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from core import prompt as grammar
from core.costs import job_cost
from core.kinds import Recipe
from core.models import ModelCatalog, ModelEntry
from core.spec import JobSpec, Lane

ModelChooser = Callable[[str | None, JobSpec], ModelEntry]
"""``(model name or None, spec) -> model``; raises when the name may not be used."""
Adjust = Callable[[JobSpec, ModelEntry], JobSpec]
"""Fills in what the prompt left out (a member's defaults); may name another model."""


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One job of a prompt: its spec (model set, sized) and its model."""

    spec: JobSpec
    model: ModelEntry


def sized_for(spec: JobSpec, model: ModelEntry) -> JobSpec:
    """``spec`` sized for ``model``'s pixel budget and size step (its aspect ratio kept)."""
    width, height = model.defaults.size_for(spec.aspect_ratio)
    return dataclasses.replace(spec, width=width, height=height)


def parse_for(text: str, catalog: ModelCatalog) -> list[JobSpec]:
    """Every job of a prompt, parsed and sized for the catalog's default model.

    Raises:
        core.prompt.PromptError: the prompt does not parse.
    """
    default = catalog.default.defaults
    return grammar.parse_all(text, pixel_budget=default.pixel_budget, size_step=default.size_step)


def plan_prompt(
    text: str,
    catalog: ModelCatalog,
    *,
    choose: ModelChooser | None = None,
    adjust: Adjust | None = None,
) -> list[PlannedJob]:
    """Plan the jobs of a prompt (see the module docstring).

    Args:
        text: the prompt as typed, image URLs first.
        catalog: the models on offer.
        choose: picks a job's model by name (None: the prompt's ``--model``); default
            :meth:`ModelCatalog.get`.
        adjust: fills in the member's defaults once the model is known.

    Raises:
        core.prompt.PromptError: the prompt does not parse.
        KeyError: a model the catalog lacks (from the default ``choose``).
    """
    pick = choose or (lambda name, _spec: catalog.get(name))
    planned = []
    for parsed in parse_for(text, catalog):
        model = pick(parsed.model, parsed)
        spec = sized_for(parsed, model) if model.defaults != catalog.default.defaults else parsed
        if adjust is not None:
            spec = adjust(spec, model)
            if spec.model is not None and spec.model.lower() != model.name.lower():
                model = pick(spec.model, spec)
                spec = sized_for(spec, model)
        planned.append(PlannedJob(dataclasses.replace(spec, model=model.name), model))
    return planned


def price(spec: JobSpec, recipe: Recipe, lane: Lane, model: ModelEntry) -> int:
    """Credits for one job of ``recipe`` on ``model`` in ``lane`` (:func:`core.costs.job_cost`)."""
    return job_cost(
        spec,
        kind=recipe,
        lane=lane,
        pixel_budget=model.defaults.pixel_budget,
        default_steps=model.defaults.steps,
    )
