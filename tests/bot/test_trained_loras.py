"""A member's trained LoRAs in prompts: ``--lora name`` finds the file for its trainer (or
anyone, once shared), on its own model only, and the autocomplete lists it for those alone."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.autocomplete import lora_choices
from bot.services.errors import Refused
from bot.services.publish import RenderPublisher
from bot.services.submit import submit_prompt
from core.models import ModelCatalog
from core.spec import JobKind, JobSpec, Lane, PromptPart
from db import repositories as repo
from db.models import Job
from db.repositories import trained_loras
from tests.bot.conftest import give_credits, next_id, requester

Sessions = async_sessionmaker[AsyncSession]


async def _trained(sessions: Sessions, owner: int, guild: int, name: str, model: str) -> int:
    """A ready trained LoRA of ``owner`` in ``guild`` (Discord ids), as a done training leaves it."""
    async with sessions() as session, session.begin():
        user = await repo.upsert_user(session=session, discord_id=owner)
        guild_row = await repo.upsert_guild(session=session, discord_id=guild)
        job = await repo.create_job(session=session, user_id=user.id, spec=JobSpec(parts=(PromptPart("x"),)),
                                    model=model, lane=Lane.FAST, cost=0, kind=JobKind.TRAIN)
        row = await trained_loras.create_training(session=session, user_id=user.id, guild_id=guild_row.id,
                                                  name=name, trigger=f"zz{name}", kind="subject", model=model,
                                                  request={}, job_id=job.job.id)
        await trained_loras.mark_trained(session=session, job_id=job.job.id, storage_key="ab" * 32,
                                         sha256="ab" * 32, size_bytes=10)
        return row.id


async def test_a_trained_lora_is_its_trainers_until_shared_and_on_its_model_only(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog
) -> None:
    guild, owner, other = next_id(), next_id(), next_id()
    for member in (owner, other):
        await give_credits(session_factory, member, 10)
    lora_id = await _trained(session_factory, owner, guild, "kitty", catalog.default.name)

    async def imagine(member: int, text: str) -> Job:
        made = await submit_prompt(sessions=session_factory, publisher=publisher, catalog=catalog,
                                   requester=requester(member, guild_id=guild), text=text)
        async with session_factory() as session:
            job = await repo.get_job(session=session, job_id=made.jobs[0].job_id)
        assert job is not None
        return job

    job = await imagine(owner, "zzkitty on a beach --lora kitty:0.7")
    assert job.params["loras"] == [{"name": "kitty", "weight": 0.7, "storage_key": "ab" * 32, "sha256": "ab" * 32}]
    with pytest.raises(Refused, match="no trained LoRA of that name"):
        await imagine(other, "a beach --lora kitty")
    with pytest.raises(Refused, match="no trained LoRA of that name"):
        await submit_prompt(sessions=session_factory, publisher=publisher, catalog=catalog,
                            requester=requester(owner, guild_id=next_id()), text="a beach --lora kitty")
    async with session_factory() as session, session.begin():
        await trained_loras.set_shared(session=session, lora_id=lora_id, shared=True)
    assert (await imagine(other, "a beach --lora kitty")).params["loras"][0]["sha256"] == "ab" * 32
    other_model = next(e.name for e in catalog.entries if e.name != catalog.default.name)
    with pytest.raises(Refused, match=f"trained on `{catalog.default.name}`"):
        await imagine(owner, f"a beach --lora kitty --model {other_model}")


def test_the_autocomplete_offers_trained_loras_of_the_allowed_models(catalog: ModelCatalog) -> None:
    default = catalog.default.name
    choices = lora_choices(catalog, [], "kit", trained=[("kitty", default, "yours"), ("other", "nope", "shared")])
    assert [c.value for c in choices] == ["kitty"] and "yours" in choices[0].name
    assert lora_choices(catalog, [], "", model=default, trained=[]) == lora_choices(catalog, [], "", model=default)


async def test_a_training_is_not_rerolled(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog
) -> None:
    from bot.services.submit import submit_action

    owner = next_id()
    await give_credits(session_factory, owner, 10)
    lora_id = await _trained(session_factory, owner, next_id(), "pup", catalog.default.name)
    async with session_factory() as session:
        row = await session.get(trained_loras.TrainedLora, lora_id)
        assert row is not None and row.job_id is not None
        job_id = row.job_id
    with pytest.raises(Refused, match="not rerolled"):
        await submit_action(sessions=session_factory, publisher=publisher, catalog=catalog,
                            requester=requester(owner), parent_id=job_id, recipe=None)


async def test_a_button_under_an_image_made_with_a_deleted_lora_is_refused_before_charging(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog
) -> None:
    from bot.services.submit import submit_action
    from tests.bot.conftest import balance_of

    owner, guild = next_id(), next_id()
    await give_credits(session_factory, owner, 10)
    lora_id = await _trained(session_factory, owner, guild, "gone", catalog.default.name)
    made = await submit_prompt(sessions=session_factory, publisher=publisher, catalog=catalog,
                               requester=requester(owner, guild_id=guild), text="zzgone on a beach --lora gone")
    parent = made.jobs[0].job_id
    # While the LoRA lives, 🔄 under the job queues it again with the same file.
    again = await submit_action(sessions=session_factory, publisher=publisher, catalog=catalog,
                                requester=requester(owner, guild_id=guild), parent_id=parent, recipe=None)
    assert again.jobs
    async with session_factory() as session, session.begin():
        await trained_loras.delete_lora(session=session, lora_id=lora_id)
    before = await balance_of(session_factory, owner)

    with pytest.raises(Refused, match="`gone` this image was made with has been deleted"):
        await submit_action(sessions=session_factory, publisher=publisher, catalog=catalog,
                            requester=requester(owner, guild_id=guild), parent_id=parent, recipe=None)
    assert await balance_of(session_factory, owner) == before
