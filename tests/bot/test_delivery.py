"""Delivery of ended jobs to a fake Discord: where results go, once, and what they look like."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update

from bot.delivery import NsfwMode, Outcome, fit_image, nsfw_mode
from db import repositories as repo
from db.models import Job, NsfwPolicy
from tests.bot.conftest import BotHarness, balance_of, give_credits, png
from tests.fake_discord import InteractionRecord

GRID_BUTTONS = {"U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"}


def test_a_small_image_is_posted_as_rendered() -> None:
    data = png()
    assert fit_image(data, 10_000_000, "grid") == (data, "grid.png")


@pytest.mark.parametrize("limit", [60_000, 8_000])
def test_a_big_image_is_reencoded_or_scaled_until_it_fits(limit: int) -> None:
    data = png((256, 256), noise=True)
    assert len(data) > 150_000

    fitted, name = fit_image(data, limit, "grid")

    assert len(fitted) <= limit
    assert name.endswith((".webp", ".jpg"))
    with PILImage.open(io.BytesIO(fitted)) as image:
        assert image.width <= 256 and image.width >= 16


@pytest.mark.parametrize(
    ("flagged", "policy", "in_dm", "channel_nsfw", "expected"),
    [
        (False, NsfwPolicy.WITHHOLD, False, False, NsfwMode.SHOW),
        (True, NsfwPolicy.SPOILER, False, False, NsfwMode.SPOILER),
        (True, NsfwPolicy.ALLOW, False, False, NsfwMode.SPOILER),
        (True, NsfwPolicy.WITHHOLD, False, False, NsfwMode.WITHHOLD),
        (True, NsfwPolicy.WITHHOLD, False, True, NsfwMode.SHOW),
        (True, NsfwPolicy.WITHHOLD, True, False, NsfwMode.SHOW),
    ],
)
def test_flagged_images_are_covered_outside_nsfw_channels_and_dms(
    flagged: bool, policy: NsfwPolicy, in_dm: bool, channel_nsfw: bool, expected: NsfwMode
) -> None:
    assert nsfw_mode(flagged, policy, in_dm=in_dm, channel_nsfw=channel_nsfw) is expected


async def _imagine(
    h: BotHarness, prompt: str = "a lighthouse", **kwargs: object
) -> tuple[InteractionRecord, Job]:
    alice = h.fake.user("alice")
    await give_credits(h.sessions, alice.id, 5)
    interaction = await h.fake.slash("imagine", {"prompt": prompt}, user="alice", **kwargs)  # type: ignore[arg-type]
    await h.fake.wait_for(
        lambda: interaction.original is not None and "queued" in interaction.original.content
    )
    return interaction, await h.job_of(interaction)


def _creates(h: BotHarness) -> list[int]:
    return [e.message_id for e in h.fake.message_events if e.kind == "create"]


async def test_a_finished_job_turns_its_acknowledgement_into_the_grid(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    ack = interaction.original
    assert ack is not None and not ack.ephemeral
    assert [b.label for b in ack.buttons] == ["Cancel"]
    assert f"<@{h.fake.user('alice').id}>" in ack.content and "position 1" in ack.content

    await h.finish(job.id)

    message = await h.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None
    )
    assert message.id == ack.id
    assert {b.label for b in message.buttons} >= GRID_BUTTONS and len(message.buttons) == 9
    assert all(str(job.id) in (b.custom_id or "") for b in message.buttons)
    assert message.attachments[0].filename.startswith("grid_")
    stored = await h.delivered(job.id)
    assert stored.result_message_id == message.id
    assert _creates(h).count(message.id) == 1


async def test_a_result_pings_its_owner_alone_whatever_the_prompt_mentions(harness: BotHarness) -> None:
    h = harness
    bob = h.fake.user("bob").id
    interaction, job = await _imagine(h, f"<@{bob}> as a clown @everyone @here")
    ack = interaction.original
    assert ack is not None and f"<@{bob}>" in ack.content
    assert ack.mentions == [] and not ack.mention_everyone  # the acknowledgement pings no one

    await h.finish(job.id)
    message = await h.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None
    )
    assert message.mentions == [h.fake.user("alice").id] and not message.mention_everyone
    assert f"<@{bob}>" in message.content


async def test_delivering_again_posts_nothing(harness: BotHarness) -> None:
    h = harness
    _, job = await _imagine(h)
    await h.finish(job.id)
    await h.delivered(job.id)
    events = len(h.fake.message_events)

    assert await h.bot.delivery.deliver(job.id) is Outcome.ALREADY
    assert await h.bot.delivery.sweep() == 0
    assert len(h.fake.message_events) == events


async def test_after_the_token_expired_the_result_is_a_channel_reply(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    ack = interaction.original
    assert ack is not None
    h.fake.expire(interaction)

    await h.finish(job.id)

    reply = await h.fake.wait_for_message(lambda m: m.id != ack.id and bool(m.attachments))
    assert reply.interaction_id is None  # a plain channel message, not the webhook
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(ack.id)
    assert f"<@{h.fake.user('alice').id}>" in reply.content
    assert len(reply.buttons) == 9
    assert (await h.delivered(job.id)).result_message_id == reply.id


async def test_a_lost_message_id_is_found_in_the_channel_not_posted_twice(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    h.fake.expire(interaction)
    await h.finish(job.id)
    reply = await h.fake.wait_for_message(lambda m: bool(m.attachments) and m.interaction_id is None)
    await h.delivered(job.id)
    # The bot died after posting and before storing the id (the marker survived in Redis).
    async with h.sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job.id).values(result_message_id=None))
    await h.bot.redis.set(f"imaginarium:posting:{job.id}", "1")

    assert await h.bot.delivery.deliver(job.id) is Outcome.FOUND

    assert (await h.delivered(job.id)).result_message_id == reply.id
    assert sum(1 for m in h.fake.messages.values() if m.attachments) == 1


async def test_discord_errors_are_retried_and_the_result_posted_once(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    h.fake.fail_next("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", 2, status=503)
    h.fake.fail_next("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", 1, status=429)

    await h.finish(job.id)

    message = await h.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None,
        timeout=30,
    )
    injected = [r for r in h.fake.requests if r.injected]
    assert [r.status for r in injected] == [503, 503, 429]
    assert (await h.delivered(job.id)).result_message_id == message.id


async def test_a_failed_job_says_why_and_that_credits_came_back(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    alice = h.fake.user("alice").id
    assert await balance_of(h.sessions, alice) == 4

    await h.fail(job.id, "out of GPU memory")

    message = await h.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original and "failed" in interaction.original.content
            else None
        )
    )
    assert "out of GPU memory" in message.content and "1 credit were refunded" in message.content
    assert message.buttons == []
    assert await balance_of(h.sessions, alice) == 5


async def test_nsfw_results_are_spoilered_in_plain_channels_and_shown_in_nsfw_ones(
    harness: BotHarness,
) -> None:
    h = harness
    plain, plain_job = await _imagine(h, "a portrait")
    nsfw, nsfw_job = await _imagine(h, "a portrait", channel="nsfw-art")

    await h.finish(plain_job.id, nsfw=True)
    await h.finish(nsfw_job.id, nsfw=True)

    covered = await h.fake.wait_for(
        lambda: plain.original if plain.original and plain.original.attachments else None
    )
    shown = await h.fake.wait_for(
        lambda: nsfw.original if nsfw.original and nsfw.original.attachments else None
    )
    assert covered.attachments[0].filename.startswith("SPOILER_")
    assert "NSFW" in covered.content
    assert not shown.attachments[0].filename.startswith("SPOILER_")


async def test_a_server_that_withholds_nsfw_gets_no_image(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    assert job.guild_id is not None
    async with h.sessions() as session, session.begin():
        await repo.update_guild_policy(
            session=session, guild_id=job.guild_id, nsfw_policy=NsfwPolicy.WITHHOLD
        )

    await h.finish(job.id, nsfw=True)

    message = await h.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original and "withholds" in interaction.original.content
            else None
        )
    )
    assert message.attachments == []


async def test_progress_edits_the_acknowledgement_at_most_every_two_seconds(harness: BotHarness) -> None:
    h = harness
    interaction, job = await _imagine(h)
    preview = base64.b64encode(png((32, 32))).decode()
    for step in range(1, 5):
        await h.bot.redis.publish(
            f"imaginarium:progress:{job.id}",
            json.dumps({"job_id": str(job.id), "step": step, "total": 4, "preview_png_b64": preview}),
        )

    first = await h.fake.wait_for(
        lambda: (
            interaction.original if interaction.original and "step" in interaction.original.content else None
        )
    )
    assert "step 1/4" in first.content and first.attachments[0].filename == "progress.png"
    assert [b.label for b in first.buttons] == ["Cancel"]  # it stops the job at its next step
    final = await h.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original and "step 4/4" in interaction.original.content
            else None
        ),
        timeout=5,
    )
    edits = [
        e
        for e in h.fake.message_events
        if e.kind == "edit" and e.message_id == final.id and "step" in e.snapshot["content"]
    ]
    assert len(edits) == 2  # step 1 at once, the newest (4) two seconds later
    assert edits[1].at - edits[0].at >= 1.9


async def test_an_image_too_big_for_the_upload_limit_is_reencoded(harness: BotHarness) -> None:
    h = harness
    h.fake.upload_limit = 200_000
    interaction, job = await _imagine(h)

    await h.finish(job.id, size=(256, 256), noise=True)

    message = await h.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.attachments else None
    )
    assert message.attachments[0].size <= 200_000
    assert message.attachments[0].filename.endswith((".webp", ".jpg"))


async def test_a_job_id_that_is_not_ours_is_ignored(harness: BotHarness) -> None:
    assert await harness.bot.delivery.deliver(uuid.uuid4()) is Outcome.NOT_READY


async def test_each_job_of_a_permutation_is_posted_once(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 5)
    interaction = await h.fake.slash("imagine", {"prompt": "a {red, blue} car"}, user="alice")
    first = await h.job_of(interaction)
    ack = await h.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original and "2 jobs" in interaction.original.content
            else None
        )
    )
    async with h.sessions() as session:
        second_id = await session.scalar(
            select(Job.id).where(Job.user_id == first.user_id, Job.id != first.id)
        )
    assert second_id is not None

    await h.finish(first.id)
    await h.finish(second_id)

    assert (await h.delivered(first.id)).result_message_id == ack.id
    followup = await h.fake.wait_for(lambda: interaction.followups[0] if interaction.followups else None)
    assert (await h.delivered(second_id)).result_message_id == followup.id
    assert len(followup.buttons) == 9 and "blue car" in followup.content
    assert await balance_of(h.sessions, alice) == 3


async def test_a_waiting_jobs_place_in_the_queue_is_kept_up_to_date(harness: BotHarness) -> None:
    from bot.queue_refresh import WAITING_KEY

    h = harness
    await h.bot.queue_refresh.close()  # rounds by hand below, none in the background
    first_interaction, first = await _imagine(h)
    second_interaction = await h.fake.slash("imagine", {"prompt": "a dog"}, user="alice")
    second = await h.job_of(second_interaction)
    waiting = await h.fake.wait_for(
        lambda: second_interaction.original
        if second_interaction.original and "(position 2)" in second_interaction.original.content
        else None
    )
    assert await h.bot.queue_refresh.refresh_once() == 0  # nothing moved yet

    async with h.sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=first.id)  # the job ahead starts
    assert await h.bot.queue_refresh.refresh_once() == 1
    moved = h.fake.messages[waiting.id]
    assert "(position 1)" in moved.content and "a dog" in moved.content
    assert moved.embeds and moved.buttons  # the recipe and the cancel button stay
    assert await h.bot.queue_refresh.refresh_once() == 0

    async with h.sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=second.id)
    assert await h.bot.queue_refresh.refresh_once() == 0
    assert await h.bot.redis.zscore(WAITING_KEY, str(second.id)) is None  # no longer watched
    assert first_interaction.original is not None
