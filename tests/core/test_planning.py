"""The planner the bot and the command line share (core/planning.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core import planning
from core.kinds import recipe
from core.models_file import load_catalog
from core.prompt import PromptError
from core.spec import JobKind, Lane


def test_each_permutation_is_one_job_sized_for_its_model(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)

    jobs = planning.plan_prompt("a {red, blue} circle --ar 3:2 --model {shapes, tiny}", catalog)

    assert [(j.spec.prompt, j.model.name) for j in jobs] == [
        ("a red circle", "shapes"),
        ("a red circle", "tiny"),
        ("a blue circle", "shapes"),
        ("a blue circle", "tiny"),
    ]
    for job in jobs:
        assert job.spec.model == job.model.name
        assert (job.spec.width, job.spec.height) == job.model.defaults.size_for((3, 2))


def test_a_member_default_that_names_another_model_is_chosen_and_sized_again(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    chosen: list[str | None] = []

    def choose(name: str | None, spec: object) -> object:
        chosen.append(name)
        return catalog.get(name)

    jobs = planning.plan_prompt(
        "a red circle --ar 2:1",
        catalog,
        choose=choose,  # type: ignore[arg-type]
        adjust=lambda spec, model: dataclasses.replace(spec, model="tiny"),
    )

    assert chosen == [None, "tiny"] and jobs[0].model.name == "tiny"
    assert (jobs[0].spec.width, jobs[0].spec.height) == jobs[0].model.defaults.size_for((2, 1))


def test_bad_prompts_and_prices(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    with pytest.raises(PromptError):
        planning.plan_prompt("a cat --ar 9:1", catalog)
    [job] = planning.plan_prompt("a cat --quality 2", catalog)
    assert planning.price(job.spec, recipe(JobKind.IMAGINE), Lane.FAST, job.model) == 2
    assert planning.price(job.spec, recipe(JobKind.IMAGINE), Lane.RELAX, job.model) == 0
