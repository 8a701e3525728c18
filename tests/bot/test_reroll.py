"""🔄 under any result queues the same recipe from the same sources with a new seed.

One test over the whole job-kind catalogue (:mod:`core.kinds`): a kind added there is
rerolled here without a line of its own.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.publish import RenderPublisher
from bot.services.requests import ImageInput
from bot.services.submit import submit_action, submit_prompt
from core.families import Task
from core.kinds import RECIPES, Recipe, Source, recipe
from core.models import ModelCatalog
from core.spec import JobKind
from db import repositories as repo
from db.models import Job
from tests.bot.conftest import balance_of, give_credits, requester
from tests.bot.test_submit import _finish

Sessions = async_sessionmaker[AsyncSession]

_PHOTOS = tuple(
    ImageInput(
        url=f"https://cdn.example/{name}.png", filename=f"{name}.png", content_type="image/png", size=1000
    )
    for name in ("red", "blue")
)


async def _row(sessions: Sessions, job_id: uuid.UUID) -> Job:
    async with sessions() as session:
        job = await repo.get_job(session=session, job_id=job_id)
    assert job is not None
    return job


def _photos(recipe_: Recipe) -> tuple[ImageInput, ...]:
    if recipe_.source is not Source.PROMPT:
        return ()
    return _PHOTOS[: recipe_.image_count[1]] if recipe_.image_count else _PHOTOS


def _with_editor(catalog: ModelCatalog) -> ModelCatalog:
    """The catalog and an editing model (FLUX.1 Kontext; the bot never loads its weights)."""
    from core.families import ModelFamily, family
    from core.models import ModelEntry, ModelSource, SourceKind

    editor = ModelEntry(
        name="kontext",
        family=ModelFamily.FLUX_KONTEXT,
        source=ModelSource(SourceKind.FOLDER, "/srv/models/kontext"),
        defaults=family(ModelFamily.FLUX_KONTEXT).defaults,
    )
    return dataclasses.replace(catalog, entries=(*catalog.entries, editor))


async def _job_of(
    recipe_: Recipe, sessions: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user: int
) -> Job:
    """A finished job of ``recipe_``, made the way a member makes one (an instruction edit on
    an editing model)."""
    kind = recipe_.kind if recipe_.command else JobKind.IMAGINE
    model = " --model kontext" if recipe_.task is Task.EDIT else ""
    first = await submit_prompt(
        sessions=sessions, publisher=publisher, catalog=catalog, requester=requester(user),
        text=f"a lighthouse at dusk --chaos 10{model}", images=_photos(recipe_), kind=kind,
        variant=recipe_.variant if recipe_.command else None,
    )  # fmt: skip
    job_id = first.jobs[0].job_id
    await _finish(sessions, job_id)
    if recipe_.source is Source.PARENT_IMAGE:
        child = await submit_action(
            sessions=sessions, publisher=publisher, catalog=catalog, requester=requester(user),
            parent_id=job_id, recipe=recipe_, index=2,
        )  # fmt: skip
        job_id = child.jobs[0].job_id
        await _finish(sessions, job_id)
    return await _row(sessions, job_id)


@pytest.mark.parametrize(
    "recipe_", [r for r in RECIPES if not r.legacy and r.rerolls], ids=lambda r: "-".join(filter(None, r.key))
)
async def test_reroll_queues_the_same_recipe_from_the_same_sources_with_a_new_seed(
    recipe_: Recipe,
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
) -> None:
    await give_credits(session_factory, user_id, 10)
    catalog = _with_editor(catalog)
    rolled = await _job_of(recipe_, session_factory, publisher, catalog, user_id)
    before = await balance_of(session_factory, user_id)

    again = await submit_action(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        parent_id=rolled.id,
        recipe=None,
    )

    new = await _row(session_factory, again.jobs[0].job_id)
    assert (new.kind, new.variant) == (rolled.kind, rolled.variant) == recipe_.key
    assert (new.parent_id, new.parent_index) == (rolled.parent_id, rolled.parent_index)
    assert new.seed != rolled.seed
    same = {k: v for k, v in rolled.params.items() if k != "seed"}
    assert {k: v for k, v in new.params.items() if k != "seed"} == same
    if recipe_.source is Source.PROMPT:
        assert [u.rsplit("/", 1)[-1] for u in new.params["image_urls"]] == [p.filename for p in _photos(recipe_)]
    assert await balance_of(session_factory, user_id) == before - new.cost


async def test_a_reroll_of_a_row_from_before_the_catalogue_is_an_imagine(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    first = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat",
    )
    await _finish(session_factory, first.jobs[0].job_id)
    async with session_factory() as session, session.begin():
        job = await session.get(Job, first.jobs[0].job_id)
        assert job is not None
        job.kind = JobKind.REROLL

    again = await submit_action(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        parent_id=first.jobs[0].job_id,
        recipe=None,
    )

    assert (again.jobs[0].kind, again.jobs[0].variant) == recipe(JobKind.IMAGINE).key
