"""Submitting jobs: what is queued, what is charged, and every way a request is refused."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from bot.services.publish import RenderPublisher
from bot.services.requests import ImageInput
from bot.services.submit import submit_action, submit_prompt
from bot.services.user_settings import change_user_settings
from core.kinds import recipe
from core.models import ModelCatalog, ModelEntry
from core.spec import JobKind, Lane
from db import repositories as repo
from db.models import Job, JobStatus, ModerationEvent, Outbox
from tests.bot.conftest import Broker, balance_of, give_credits, next_id, requester

Sessions = async_sessionmaker[AsyncSession]


async def _jobs_of(sessions: Sessions, discord_id: int) -> list[Job]:
    async with sessions() as session:
        user = await repo.upsert_user(session=session, discord_id=discord_id)
        return list(await session.scalars(select(Job).where(Job.user_id == user.id).order_by(Job.created_at)))


async def _guild(sessions: Sessions, **policy: object) -> int:
    discord_id = next_id()
    async with sessions() as session, session.begin():
        guild = await repo.upsert_guild(session=session, discord_id=discord_id)
        if policy:
            await repo.update_guild_policy(session=session, guild_id=guild.id, **policy)
    return discord_id


async def _finish(sessions: Sessions, job_id: uuid.UUID) -> None:
    """Play the worker: claim the job and store four images."""
    async with sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=job_id)
        await repo.finish_job(
            session=session,
            job_id=job_id,
            images=[
                repo.NewImage(index=i, seed=i, storage_key=f"k{i}", width=64, height=64, sha256="0" * 64)
                for i in range(4)
            ],
            grid_storage_key="grid",
        )


def _family_of(model: ModelEntry, monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    """Make the model's family, for this test, one that differs in ``changes``."""
    from core import families

    changed = dataclasses.replace(families.family(model.family), **changes)  # type: ignore[arg-type]
    monkeypatch.setitem(families._BY_KEY, model.family, changed)


async def _prompt(
    sessions: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int, text: str
) -> object:
    """Submit ``text`` as the user's ``/imagine`` prompt."""
    return await submit_prompt(
        sessions=sessions, publisher=publisher, catalog=catalog, requester=requester(user_id), text=text
    )


async def test_imagine_queues_one_paid_job_and_publishes_it(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, broker: Broker, user_id: int
) -> None:
    asker = requester(user_id)
    submission = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=asker,
        text="a red fox --ar 16:9",
    )

    assert submission.created
    [job] = submission.jobs
    assert job.cost == 1 and submission.balance == 9
    assert job.model == "tiny" and job.lane is Lane.FAST and job.position == 1
    assert job.spec.width > job.spec.height  # 16:9 sized for the tiny model
    assert await balance_of(session_factory, user_id) == 9
    [row] = await _jobs_of(session_factory, user_id)
    assert row.interaction_id == asker.interaction_id and row.interaction_token == asker.interaction_token
    assert row.status == JobStatus.QUEUED and row.seed is not None
    assert broker.job_ids("render.fast.tiny") == [row.id]
    async with session_factory() as session:
        outbox = (await session.scalars(select(Outbox).where(Outbox.job_id == row.id))).one()
    assert outbox.published_at is not None


async def test_the_same_interaction_twice_queues_and_charges_once(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, broker: Broker, user_id: int
) -> None:
    asker = requester(user_id)
    first = await submit_prompt(
        sessions=session_factory, publisher=publisher, catalog=catalog, requester=asker, text="a cat"
    )
    again = await submit_prompt(
        sessions=session_factory, publisher=publisher, catalog=catalog, requester=asker, text="a cat"
    )

    assert not again.created and again.jobs[0].job_id == first.jobs[0].job_id
    assert len(await _jobs_of(session_factory, user_id)) == 1
    assert await balance_of(session_factory, user_id) == 9
    assert len(broker.job_ids("render.fast.tiny")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat --ar 99:1", "--ar 99:1"),
        ("a cat --sed 5", "did you mean --seed"),
        ("--ar 1:1", "the prompt is empty"),
    ],
)
async def test_a_bad_prompt_is_refused_with_the_token_named_and_nothing_charged(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    text: str,
    expected: str,
) -> None:
    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            text=text,
        )

    assert refused.value.reason is RefusalReason.PROMPT
    assert expected in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    assert await _jobs_of(session_factory, user_id) == []


async def test_a_banned_word_is_refused_recorded_and_not_charged(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    guild = await _guild(session_factory, banned_words=["pineapple"])

    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id, guild_id=guild),
            text="a Pineapple pizza",
        )

    assert refused.value.reason is RefusalReason.MODERATION
    assert "pineapple" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    async with session_factory() as session:
        kinds = list(
            await session.scalars(
                select(ModerationEvent.kind).where(
                    ModerationEvent.detail["prompt"].astext == "a Pineapple pizza"
                )
            )
        )
    assert kinds == ["banned_word"]


async def test_the_minors_filter_refuses_before_anything_is_queued(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, broker: Broker, user_id: int
) -> None:
    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            text="a n.u.d.e child on a beach",
        )

    assert refused.value.reason is RefusalReason.MODERATION
    assert broker.job_ids("render.fast.tiny") == []
    assert await _jobs_of(session_factory, user_id) == []


async def test_no_credits_is_refused_and_relax_is_free(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, broker: Broker
) -> None:
    poor = next_id()

    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(poor),
            text="a cat",
        )
    assert refused.value.reason is RefusalReason.CREDITS
    assert "costs 1 credit and you have 0 credits" in refused.value.message

    relaxed = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(poor),
        text="a cat --relax",
    )
    assert relaxed.jobs[0].cost == 0 and relaxed.jobs[0].lane is Lane.RELAX
    assert broker.job_ids("render.relax.tiny") == [relaxed.jobs[0].job_id]
    assert await balance_of(session_factory, poor) == 0


async def test_relax_is_refused_where_the_server_does_not_allow_it(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    guild = await _guild(session_factory, relax_allowed=False)

    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id, guild_id=guild),
            text="a cat --relax",
        )
    assert refused.value.reason is RefusalReason.LANE


async def test_the_queue_cap_refuses_the_next_job_and_a_role_raises_it(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    role = next_id()
    guild = await _guild(
        session_factory, max_queued=2, max_running=1, role_quotas={str(role): {"max_queued": 3}}
    )
    for _ in range(2):
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id, guild_id=guild),
            text="a cat",
        )

    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id, guild_id=guild),
            text="a cat",
        )
    assert refused.value.reason is RefusalReason.CAPS
    assert "2 waiting" in refused.value.message
    assert await balance_of(session_factory, user_id) == 8

    with_role = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id, guild_id=guild, roles=(role,)),
        text="a cat",
    )
    assert with_role.created and len(await _jobs_of(session_factory, user_id)) == 3


async def test_permutations_queue_one_job_each_or_none(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    submission = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a {red, blue} car",
    )
    assert sorted(j.spec.prompt for j in submission.jobs) == ["a blue car", "a red car"]
    assert submission.balance == 8

    with pytest.raises(Refused) as refused:  # 3 x 3 = 9 jobs, 8 credits
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            text="a {red, blue, green} car --repeat 3",
        )
    assert refused.value.reason in (RefusalReason.CREDITS, RefusalReason.CAPS)
    assert await balance_of(session_factory, user_id) == 8
    assert len(await _jobs_of(session_factory, user_id)) == 2


async def test_user_defaults_apply_unless_the_prompt_says_otherwise(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    async with session_factory() as session, session.begin():
        await change_user_settings(
            session=session, discord_user_id=user_id, aspect_ratio="16:9", stylize=250, private=True
        )

    defaulted = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat",
    )
    written = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat --ar 1:1 --s 50",
    )

    assert defaulted.jobs[0].spec.aspect_ratio == (16, 9) and defaulted.jobs[0].spec.stylize == 250
    assert written.jobs[0].spec.aspect_ratio == (1, 1) and written.jobs[0].spec.stylize == 50
    assert all(job.private for job in await _jobs_of(session_factory, user_id))


async def test_an_unknown_or_disallowed_model_is_refused(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    with pytest.raises(Refused) as unknown:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            text="a cat --model sdxl",
        )
    assert unknown.value.reason is RefusalReason.MODEL and "`tiny`" in unknown.value.message

    guild = await _guild(session_factory, allowed_models=["something-else"])
    with pytest.raises(Refused) as disallowed:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id, guild_id=guild),
            text="a cat",
        )
    assert "not allowed on this server" in disallowed.value.message
    assert await balance_of(session_factory, user_id) == 10


async def test_attachments_become_image_prompts_and_non_images_are_refused(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    photo = ImageInput(url="https://cdn.example/a.png", filename="a.png", content_type="image/png", size=1000)
    submission = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="in the style of a poster",
        images=[photo],
    )
    assert submission.jobs[0].spec.image_urls == ("https://cdn.example/a.png",)

    text_file = dataclasses.replace(photo, filename="notes.txt", content_type="text/plain")
    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            text="a cat",
            images=[text_file],
        )
    assert refused.value.reason is RefusalReason.INPUT and "notes.txt" in refused.value.message


async def test_someone_elses_button_makes_a_copy_on_the_clickers_credits(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    original = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat",
    )
    parent_id = original.jobs[0].job_id
    await _finish(session_factory, parent_id)
    clicker = next_id()
    await give_credits(session_factory, clicker, 3)

    copy = await submit_action(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(clicker),
        parent_id=parent_id,
        recipe=recipe(JobKind.VARIATION, "strong"),
        index=2,
    )

    [job] = await _jobs_of(session_factory, clicker)
    assert job.id == copy.jobs[0].job_id
    assert (job.kind, job.variant, job.parent_id, job.parent_index) == (
        JobKind.VARIATION,
        "strong",
        parent_id,
        2,
    )
    assert job.prompt == "a cat" and job.seed != original.jobs[0].spec.seed
    assert await balance_of(session_factory, clicker) == 2
    assert await balance_of(session_factory, user_id) == 9


async def test_remix_replaces_the_prompt_but_keeps_the_size(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    original = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat --ar 2:3",
    )
    parent = original.jobs[0]
    await _finish(session_factory, parent.job_id)

    remixed = await submit_action(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        parent_id=parent.job_id,
        recipe=recipe(JobKind.VARIATION, "subtle"),
        index=0,
        remix_text="a dog --ar 16:9",
    )

    spec = remixed.jobs[0].spec
    assert spec.prompt == "a dog"
    assert (spec.width, spec.height) == (parent.spec.width, parent.spec.height)


async def test_an_action_on_an_unfinished_job_is_refused_and_not_charged(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    queued = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat",
    )

    with pytest.raises(Refused) as refused:
        await submit_action(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            parent_id=queued.jobs[0].job_id,
            recipe=recipe(JobKind.UPSCALE, "subtle"),
            index=1,
        )
    assert refused.value.reason is RefusalReason.NOT_FOUND
    assert await balance_of(session_factory, user_id) == 9

    with pytest.raises(Refused):
        await submit_action(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            parent_id=uuid.uuid4(),
            recipe=None,
        )


async def test_fast_jobs_go_before_relax_jobs_in_the_queue(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    relaxed = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat --relax",
    )
    fast = await submit_prompt(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        text="a cat",
    )

    assert relaxed.jobs[0].position == 1
    assert fast.jobs[0].position == 1  # it jumps the relax job
    async with session_factory() as session:
        count = await session.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED)
        )
    assert count is not None and count >= 2


async def test_a_job_the_models_family_cannot_run_is_refused_before_charging(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import families

    original = await submit_prompt(
        sessions=session_factory, publisher=publisher, catalog=catalog, requester=requester(user_id), text="a cat"
    )
    await _finish(session_factory, original.jobs[0].job_id)
    before = await balance_of(session_factory, user_id)
    model = catalog.get(original.jobs[0].model)
    # A family without inpainting (as some families have none): zoom, pan and region are refused.
    _family_of(model, monkeypatch, tasks=frozenset({families.Task.TEXT2IMG, families.Task.IMG2IMG}))

    with pytest.raises(Refused) as refused:
        await submit_action(
            sessions=session_factory,
            publisher=publisher,
            catalog=catalog,
            requester=requester(user_id),
            parent_id=original.jobs[0].job_id,
            recipe=recipe(JobKind.ZOOM, "2"),
            index=0,
        )

    assert refused.value.reason is RefusalReason.MODEL
    assert "cannot do Zoom Out 2x" in refused.value.message and "Nothing was charged" in refused.value.message
    assert await balance_of(session_factory, user_id) == before
    # What the family can do still runs.
    await submit_action(
        sessions=session_factory,
        publisher=publisher,
        catalog=catalog,
        requester=requester(user_id),
        parent_id=original.jobs[0].job_id,
        recipe=recipe(JobKind.VARIATION, "subtle"),
        index=0,
    )


async def test_a_sampler_the_models_family_cannot_use_is_refused_before_charging(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import families

    model = catalog.default
    _family_of(model, monkeypatch, samplers=families.FLOW_SAMPLER_NAMES)

    with pytest.raises(Refused) as refused:
        await _prompt(session_factory, publisher, catalog, user_id, "a cat --sampler DPM++ 2M Karras")

    assert refused.value.reason is RefusalReason.PROMPT
    assert "cannot use the sampler `DPM++ 2M Karras`" in refused.value.message
    assert "`Euler a`" in refused.value.message and "Nothing was charged" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10


async def test_clip_skip_on_a_family_without_clip_layers_is_refused_before_charging(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import families

    model = catalog.default
    _family_of(model, monkeypatch, clip_skip=False)

    with pytest.raises(Refused) as refused:
        await _prompt(session_factory, publisher, catalog, user_id, "a cat --clip-skip 2")

    assert refused.value.reason is RefusalReason.PROMPT and "--clip-skip" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    assert not families.family(families.ModelFamily.FLUX).clip_skip


async def test_weights_on_a_family_that_cannot_blend_them_are_refused_before_charging(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import families

    model = catalog.default
    _family_of(model, monkeypatch, weights=False, title="Qwen-Image")

    for text in ("a cat::2 a dog::1", "a cat:: a dog::-0.5"):
        with pytest.raises(Refused) as refused:
            await _prompt(session_factory, publisher, catalog, user_id, text)
        assert refused.value.reason is RefusalReason.PROMPT
        assert "Qwen-Image" in refused.value.message and "without weights" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    # --weird moves embeddings such a family does not give: refused too.
    with pytest.raises(Refused) as refused:
        await _prompt(session_factory, publisher, catalog, user_id, "a cat --weird 500")
    assert "--weird" in refused.value.message and "Nothing was charged" in refused.value.message
    # Equal parts are one prompt to such a family: accepted.
    await _prompt(session_factory, publisher, catalog, user_id, "a cat:: a dog")
    assert await balance_of(session_factory, user_id) < 10
    assert not families.family(families.ModelFamily.Z_IMAGE).weights
    assert not families.family(families.ModelFamily.QWEN_IMAGE).weights


async def test_no_on_a_family_without_negative_prompts_is_refused_before_charging(
    session_factory: Sessions,
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    user_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import families

    model = catalog.default
    _family_of(model, monkeypatch, negative_prompt=False, title="FLUX.2 [dev]")

    with pytest.raises(Refused) as refused:
        await _prompt(session_factory, publisher, catalog, user_id, "a cat --no red")
    assert refused.value.reason is RefusalReason.PROMPT
    assert "FLUX.2 [dev]" in refused.value.message and "--no" in refused.value.message
    assert "Nothing was charged" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    # --stylize still changes its (built-in) guidance: accepted.
    await _prompt(session_factory, publisher, catalog, user_id, "a cat --stylize 500")
    assert await balance_of(session_factory, user_id) < 10
    assert not families.family(families.ModelFamily.FLUX2_DEV).negative_prompt


async def test_no_and_stylize_without_guidance_are_refused_before_charging(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    # At cfg 1 or less the negative prompt is never used and stylize scales nothing.
    for text, flag in (("a cat --no red --cfg 1", "--no"), ("a cat --stylize 500 --cfg 1", "--stylize")):
        with pytest.raises(Refused) as refused:
            await _prompt(session_factory, publisher, catalog, user_id, text)
        assert refused.value.reason is RefusalReason.PROMPT
        assert flag in refused.value.message and "without guidance" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10
    await _prompt(session_factory, publisher, catalog, user_id, "a cat --no red --cfg 2")
    assert await balance_of(session_factory, user_id) < 10


async def test_style_raw_on_a_model_without_a_house_style_is_refused_before_charging(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    import dataclasses

    assert not catalog.default.defaults.has_house_style
    with pytest.raises(Refused) as refused:
        await _prompt(session_factory, publisher, catalog, user_id, "a cat --style raw")
    assert refused.value.reason is RefusalReason.PROMPT and "adds no house style" in refused.value.message
    assert await balance_of(session_factory, user_id) == 10

    styled = dataclasses.replace(
        catalog.default, defaults=dataclasses.replace(catalog.default.defaults, negative_prompt="blurry")
    )
    from core.models import ModelCatalog as Catalog

    with_style = Catalog(
        tuple(styled if e.name == styled.name else e for e in catalog.entries), catalog.default_name
    )
    submission = await _prompt(session_factory, publisher, with_style, user_id, "a cat --style raw")
    assert submission.jobs[0].spec.raw  # type: ignore[attr-defined]


async def test_describe_on_a_model_without_a_captioner_is_refused_before_charging(
    session_factory: Sessions, publisher: RenderPublisher, catalog: ModelCatalog, user_id: int
) -> None:
    bare = dataclasses.replace(catalog.get("tiny"), captioner=None)
    without = dataclasses.replace(catalog, entries=tuple(bare if e.name == "tiny" else e for e in catalog))
    before = await balance_of(session_factory, user_id)
    picture = ImageInput(url="https://cdn.discordapp.com/a/b.png", filename="b.png", content_type="image/png", size=10)

    with pytest.raises(Refused) as refused:
        await submit_prompt(
            sessions=session_factory, publisher=publisher, catalog=without, requester=requester(user_id),
            text="", images=[picture], kind=JobKind.DESCRIBE,
        )
    assert refused.value.reason is RefusalReason.MODEL
    assert "`tiny` has no captioner" in refused.value.message and "Nothing was charged" in refused.value.message
    assert await balance_of(session_factory, user_id) == before

    # With its captioner it queues one describe job at the smallest price, flags of renders aside.
    done = await submit_prompt(
        sessions=session_factory, publisher=publisher, catalog=catalog, requester=requester(user_id),
        text="", images=[picture], kind=JobKind.DESCRIBE,
    )
    assert [(j.kind, j.cost) for j in done.jobs] == [(JobKind.DESCRIBE, 1)]
    assert await balance_of(session_factory, user_id) == before - 1
