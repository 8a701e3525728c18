"""The job-kind catalogue (:mod:`core.kinds`) meets the bot and the worker.

Every recipe a member can queue has a worker operation, a way to be asked for (a slash
command, a button, the region menu), a title and a price; every button fits Discord's
layout rules; an unknown kind or variant is refused, never guessed at.
"""

from __future__ import annotations

import re

import pytest
from discord.ext import commands

from bot import render
from bot.cogs.imagine import ImagineCog
from bot.views.actions import BUTTON_TEMPLATE, REGIONS, Action, button_action, custom_id
from core.costs import job_cost
from core.kinds import (
    RECIPES,
    Message,
    Recipe,
    Source,
    UnknownRecipe,
    button_recipe,
    custom_zoom_recipe,
    recipe,
)
from core.spec import JobKind, JobSpec, PromptPart
from gpu_worker.operations import OPERATIONS

LIVE = [r for r in RECIPES if not r.legacy]


def _id(r: Recipe) -> str:
    return "-".join(filter(None, r.key))


def _commands() -> set[str]:
    from bot.cogs.training import TrainingCog

    cog = ImagineCog.__new__(ImagineCog)
    assert isinstance(cog, commands.Cog)
    return {f"/{c.name}" for c in (*ImagineCog.__cog_app_commands__, *TrainingCog.__cog_app_commands__)}


@pytest.mark.parametrize("r", RECIPES, ids=_id)
def test_every_recipe_has_an_operation_a_title_and_a_price(r: Recipe) -> None:
    assert r.operation in OPERATIONS
    assert r.title.strip()
    spec = JobSpec(parts=(PromptPart("a cat"),))
    assert job_cost(spec, kind=r) >= 1
    assert recipe(*r.key) is r


@pytest.mark.parametrize("r", LIVE, ids=_id)
def test_every_recipe_can_be_asked_for(r: Recipe) -> None:
    ways = 0
    if r.command is not None:
        assert r.command in _commands()
        ways += 1
    for b in r.buttons:
        assert button_action(b.code) == (r, b)
        assert re.fullmatch(BUTTON_TEMPLATE, custom_id(b.code, "00000000-0000-0000-0000-000000000000", 1))
        ways += 1
    if r.menu_label is not None:
        assert REGIONS[r.variant or ""] == r.menu_label
        ways += 1
    if r.kind is JobKind.ZOOM and isinstance(r.arg, float):
        assert custom_zoom_recipe(r.arg) is r  # the factor typed in Custom Zoom's form
        ways += 1
    assert ways >= 1, f"{r.title} cannot be asked for"
    # A job made from an earlier image needs that image; one from a prompt (or a training
    # set of pictures given with it) needs a command.
    assert (r.source in (Source.PROMPT, Source.TRAINING_SET)) == (r.command is not None)


def test_keys_titles_and_codes_are_unique() -> None:
    assert len({r.key for r in RECIPES}) == len(RECIPES)
    codes = [b.code for r in RECIPES for b in r.buttons]
    assert len(codes) == len(set(codes))
    assert not set(codes) & {a.value for a in Action}
    assert len({r.title for r in RECIPES}) == len(RECIPES)


@pytest.mark.parametrize(
    "buttons",
    [render.grid_buttons(), render.single_image_buttons(0, public=False)],
    ids=["grid", "single image"],
)
def test_result_messages_fit_discords_component_limits(buttons: list[render.ButtonSpec]) -> None:
    # At most five action rows of at most five buttons each; custom ids at most 100 chars.
    rows: dict[int, int] = {}
    for b in buttons:
        rows[b.row] = rows.get(b.row, 0) + 1
        assert b.label or b.emoji
        assert len(custom_id(b.action, "00000000-0000-0000-0000-000000000000", b.index)) <= 100
    assert set(rows) <= set(range(5)) and max(rows.values()) <= 5


def test_the_grid_carries_every_grid_button_once_per_image() -> None:
    grid = render.grid_buttons()
    for r in LIVE:
        for b in r.buttons:
            if b.message is Message.GRID:
                assert sorted(x.index for x in grid if x.action == b.code) == [0, 1, 2, 3]


def test_unknown_kinds_and_variants_are_refused() -> None:
    with pytest.raises(UnknownRecipe):
        recipe(JobKind.PAN, "diagonal")
    with pytest.raises(UnknownRecipe):
        recipe(JobKind.UPSCALE)
    assert button_recipe("nope") is None
    with pytest.raises(ValueError):
        button_action("nope")


@pytest.mark.parametrize(("kind", "rerolled"), [(JobKind.IMAGINE, True), (JobKind.TRAIN, False)])
async def test_a_result_offers_reroll_only_where_the_recipe_is_rerolled(kind: JobKind, rerolled: bool) -> None:
    import uuid

    from bot.delivery.messages import prepare
    from db.models import Image, Job, JobStatus

    job_id = uuid.uuid4()
    images = [Image(index=i, seed=i, storage_key=f"k{i}", width=64, height=64, nsfw=False, public=True)
              for i in range(4)]
    job = Job(id=job_id, kind=kind, variant=None, status=JobStatus.DONE, prompt="a pup", model="m",
              params=JobSpec(parts=(PromptPart("a pup"),)).to_dict(), images=images, grid_storage_key="grid",
              prompts=None, cost=1)

    async def no_file(key: str, **_: object) -> tuple[None, None]:
        return None, None

    prepared = await prepare(job, owner=1, guild=None, size_limit=10_000_000, files_of=no_file)

    assert prepared.view is not None
    actions = [item.action for item in prepared.view.children]  # type: ignore[attr-defined]
    assert Action.PICK in actions
    # A training's samples: 🔄 would train again, so it is not offered (and refused if pressed).
    assert (Action.REROLL in actions) is rerolled
    assert render.grid_buttons(rerolls=False) == [b for b in render.grid_buttons() if b.action is not Action.REROLL]
