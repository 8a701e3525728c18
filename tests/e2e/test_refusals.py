"""Bad requests: each is explained to the user alone, and nothing is charged."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from bot.views.actions import custom_id
from db import repositories as repo
from db.models import Job
from tests.bot.conftest import png, store_image
from tests.e2e.conftest import Deployment
from tests.fake_discord import FakeMessage, InteractionRecord


async def _explanation(d: Deployment, interaction: InteractionRecord) -> FakeMessage:
    """The ephemeral message the bot answered with (and its public placeholder is gone)."""
    message = await d.fake.wait_for(
        lambda: (
            next((m for m in interaction.followups if m.ephemeral and not m.deleted), None)
            or (
                interaction.original
                if interaction.original is not None
                and interaction.original.ephemeral
                and not interaction.original.loading
                else None
            )
        ),
        timeout=15,
        what=f"an ephemeral answer to {interaction.name}",
    )

    def no_public_trace() -> bool:
        # A "thinking" placeholder (type 5) made for a refused request must be gone; a type 6
        # acknowledgement made none (its @original is the clicked message itself).
        made = list(interaction.followups)
        if interaction.response is not None and interaction.response.type == 5 and interaction.original:
            made.append(interaction.original)
        return all(m.ephemeral or m.deleted for m in made)

    await d.fake.wait_for(no_public_trace, what="no public message left for a refused request")
    return message


async def _job_count(d: Deployment) -> int:
    async with d.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize("deleted_deferral", ["new message", "unknown message"])
async def test_bad_inputs_are_explained_privately_and_charge_nothing(
    deployment: Deployment, deleted_deferral: str
) -> None:
    """Under either answer Discord has given to a follow-up after a deleted deferral."""
    d = deployment
    d.fake.followup_after_deleted_deferral = deleted_deferral
    await d.grant("alice", 5)
    guild_id = d.fake.default_guild.id
    async with d.sessions() as session, session.begin():
        guild = await repo.upsert_guild(session=session, discord_id=guild_id)
        await repo.update_guild_policy(
            session=session, guild_id=guild.id, banned_words=["pineapple"], max_queued=1, max_running=0
        )

    bad_flag = await d.fake.slash("imagine", {"prompt": "a cat --ar 99:1"}, user="alice")
    assert "--ar 99:1" in (await _explanation(d, bad_flag)).content
    # Needing no I/O, it is the first response itself: no deferral was ever shown.
    assert [r.type for r in bad_flag.responses] == [4] and bad_flag.original is not None
    assert bad_flag.original.ephemeral

    unknown_flag = await d.fake.slash("imagine", {"prompt": "a cat --sed 5"}, user="alice")
    assert "did you mean --seed" in (await _explanation(d, unknown_flag)).content

    banned = await d.fake.slash("imagine", {"prompt": "a pineapple pizza"}, user="alice")
    assert "pineapple" in (await _explanation(d, banned)).content

    minors = await d.fake.slash("imagine", {"prompt": "a naked child"}, user="alice")
    assert "never allowed" in (await _explanation(d, minors)).content

    no_credits = await d.fake.slash("imagine", {"prompt": "a cat"}, user="bob")
    assert "you have 0 credits" in (await _explanation(d, no_credits)).content
    # Needing the database, it comes after a public deferral, which is gone again.
    assert no_credits.responses[0].type == 5 and no_credits.original is not None
    assert no_credits.original.deleted

    assert await _job_count(d) == 0
    queued = await d.fake.slash("imagine", {"prompt": "a cat"}, user="alice")
    await d.job_of(queued)
    over_cap = await d.fake.slash("imagine", {"prompt": "a dog"}, user="alice")
    assert "1 waiting" in (await _explanation(d, over_cap)).content

    # Someone else's buttons: cancel and delete belong to the owner.
    ack = await d.fake.wait_for(
        lambda: queued.original if queued.original and queued.original.buttons else None
    )
    job = await d.job_of(queued)
    not_yours = await d.fake.click(ack, custom_id("cancel", job.id, 0), user="bob")
    assert "Only" in (await _explanation(d, not_yours)).content

    # The rest of the refusal list: a file that is not an image (no I/O: the first response),
    # a model and a lane the server does not offer, a member banned here (after deferring).
    not_an_image = await d.fake.slash(
        "imagine", {"prompt": "a cat"}, user="alice", attachments={"image": ("notes.txt", b"just text")}
    )
    assert "is not an image" in (await _explanation(d, not_an_image)).content
    assert [r.type for r in not_an_image.responses] == [4]
    unknown_model = await d.fake.slash("imagine", {"prompt": "a cat --model nope"}, user="alice")
    assert "nope" in (await _explanation(d, unknown_model)).content
    async with d.sessions() as session, session.begin():
        await repo.update_guild_policy(session=session, guild_id=guild.id, relax_allowed=False)
    relax = await d.fake.slash("imagine", {"prompt": "a cat --relax"}, user="alice")
    assert "relax" in (await _explanation(d, relax)).content.lower()
    ban = await d.fake.slash("admin ban", {"member": d.fake.user("alice").id, "reason": "flooding"}, user="bob")
    await d.fake.wait_for(lambda: ban.original is not None and not ban.original.loading, what="the ban")
    banned_member = await d.fake.slash("imagine", {"prompt": "a quiet lake"}, user="alice")
    assert "banned you" in (await _explanation(d, banned_member)).content

    assert await d.balance("alice") == 4  # the one queued job
    assert await d.balance("bob") == 0
    assert await _job_count(d) == 1
    for record in d.fake.interactions.values():
        assert record.ack_latency is not None and record.ack_latency < 3


async def test_someone_elses_trash_button_is_refused(deployment: Deployment) -> None:
    """🗑 under another user's image: an ephemeral explanation; the image stays."""
    d = deployment
    await d.grant("alice", 2)
    interaction = await d.fake.slash("imagine", {"prompt": "a lighthouse"}, user="alice")
    job = await d.job_of(interaction)
    await _play_worker(d, job.id)
    grid = await d.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None,
        timeout=20,
    )
    pick = await d.fake.click(grid, custom_id("u", job.id, 0), user="alice")
    single = await d.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )

    trash = await d.fake.click(single, custom_id("del", job.id, 0), user="bob")

    assert "can delete" in (await _explanation(d, trash)).content
    assert not d.fake.messages[single.id].deleted
    assert await d.balance("bob") == 0 and await d.balance("alice") == 1


async def _play_worker(d: Deployment, job_id: uuid.UUID) -> None:
    """Finish a job the way a worker does (images in the store, job done, NOTIFY)."""
    store = d.tmp / "data" / "images"
    images = []
    for index in range(4):
        key = store_image(store, png(seed=index))
        images.append(
            repo.NewImage(index=index, seed=index, storage_key=key, width=64, height=64, sha256="0" * 64)
        )
    grid = store_image(store, png((128, 128)))
    async with d.sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=job_id)
        await repo.finish_job(session=session, job_id=job_id, images=images, grid_storage_key=grid)
        await repo.notify_job_event(session=session, job_id=job_id)
