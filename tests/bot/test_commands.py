"""Commands and buttons as a user sees them, with the bot in this process on a fake Discord."""

from __future__ import annotations

import uuid

import pytest

from bot.views.actions import custom_id
from core.spec import JobKind, Lane
from db.models import JobStatus
from tests.bot.conftest import BotHarness, balance_of, give_credits
from tests.fake_discord import FakeMessage, InteractionRecord


async def _grid(
    h: BotHarness, user: str = "alice", prompt: str = "a lighthouse"
) -> tuple[FakeMessage, uuid.UUID]:
    """A delivered grid of ``user``'s."""
    await give_credits(h.sessions, h.fake.user(user).id, 5)
    interaction = await h.fake.slash("imagine", {"prompt": prompt}, user=user)
    job = await h.job_of(interaction)
    await h.finish(job.id)
    await h.delivered(job.id)
    message = interaction.original
    assert message is not None and len(message.buttons) == 9
    return message, job.id


async def _ephemeral_reply(h: BotHarness, interaction: InteractionRecord) -> FakeMessage:
    return await h.fake.wait_for(
        lambda: (
            next((m for m in interaction.followups if m.ephemeral), None)
            or (
                interaction.original
                if interaction.original
                and interaction.original.ephemeral
                and not interaction.original.loading
                else None
            )
        )
    )


async def test_a_bad_flag_is_explained_to_the_user_alone_and_nothing_is_charged(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)

    interaction = await h.fake.slash("imagine", {"prompt": "a cat --ar 99:1"}, user="alice")

    reply = await _ephemeral_reply(h, interaction)
    assert "--ar 99:1" in reply.content and "aspect ratio" in reply.content
    # Needing no I/O, the refusal is the first response itself: no public placeholder ever.
    assert [r.type for r in interaction.responses] == [4] and reply.ephemeral
    assert interaction.ack_latency is not None and interaction.ack_latency < 1.0
    assert await balance_of(h.sessions, alice) == 3


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("imagine", {"prompt": "a cat\x00 on a mat"}),
        ("imagine", {"prompt": "a cat", "model": "ti\x00ny"}),
        ("lora delete", {"name": "pup\x00"}),
        ("gallery search", {"words": "red\x00fox"}),
    ],
    ids=["prompt", "model", "subcommand", "search"],
)
async def test_a_character_no_database_can_hold_is_refused_before_any_command_runs(
    harness: BotHarness, command: str, options: dict[str, str]
) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)

    interaction = await h.fake.slash(command, options, user="alice")

    reply = await _ephemeral_reply(h, interaction)
    assert "unusable character (U+0000)" in reply.content and "Nothing was charged" in reply.content
    assert await balance_of(h.sessions, alice) == 3
    # Autocomplete on such a value offers nothing rather than failing.
    if command == "imagine" and "model" in options:
        offered = await h.fake.autocomplete("imagine", options, "model", user="alice")
        await h.fake.wait_for(lambda: offered.choices is not None)
        assert offered.choices == []


async def test_an_image_link_to_a_host_workers_may_not_fetch_from_is_refused_before_charging(
    harness: BotHarness,
) -> None:
    h = harness
    h.bot.image_hosts = frozenset({"cdn.discordapp.com", "media.discordapp.net"})  # the default IMAGE_URL_HOSTS
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)

    for prompt, host in (
        ("https://example.com/a.png a cat", "example.com"),
        ("a cat --sref http://127.0.0.1:6379/x.png", "127.0.0.1"),
        ("a cat --cref https://169.254.169.254/latest.png", "169.254.169.254"),
    ):
        refused = await h.fake.slash("imagine", {"prompt": prompt}, user="alice")
        reply = await _ephemeral_reply(h, refused)
        assert f"`{host}` is not one of them" in reply.content and "`cdn.discordapp.com`" in reply.content
        assert [r.type for r in refused.responses] == [4]  # no I/O needed: the first response
    assert await balance_of(h.sessions, alice) == 3

    allowed = await h.fake.slash("imagine", {"prompt": "https://cdn.discordapp.com/attachments/1/2/a.png a cat"}, user="alice")
    assert (await h.job_of(allowed)).params["image_urls"] == ["https://cdn.discordapp.com/attachments/1/2/a.png"]


async def test_pick_shows_one_image_with_its_buttons_and_costs_nothing(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h)
    alice = h.fake.user("alice").id
    before = await balance_of(h.sessions, alice)

    click = await h.fake.click(grid, custom_id("u", job_id, 1))

    single = await h.fake.wait_for(
        lambda: click.original if click.original and click.original.attachments else None
    )
    assert "Image #2" in single.content
    labels = [b.label for b in single.buttons]
    for label in (
        "Upscale (Subtle)",
        "Upscale (Creative)",
        "Vary (Subtle)",
        "Vary (Strong)",
        "Vary (Region)",
    ):
        assert label in labels
    assert {"Zoom Out 2x", "Zoom Out 1.5x", "Make Square", "Unpublish"} <= set(labels)
    assert {b.emoji_name for b in single.buttons} >= {"⬅️", "➡️", "⬆️", "⬇️", "❤️", "🗑️"}
    assert await balance_of(h.sessions, alice) == before


async def test_upscale_queues_a_job_from_the_picked_image(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h)
    pick = await h.fake.click(grid, custom_id("u", job_id, 1))
    single = await h.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )

    click = await h.fake.click(single, custom_id("ups", job_id, 1))

    upscale = await h.job_of(click)
    assert (upscale.kind, upscale.variant, upscale.parent_id, upscale.parent_index) == (
        JobKind.UPSCALE,
        "subtle",
        job_id,
        1,
    )
    ack = await h.fake.wait_for(
        lambda: click.original if click.original and "queued" in click.original.content else None
    )
    assert "Upscale (Subtle) of image #2" in ack.content


async def test_someone_elses_variation_runs_on_the_clickers_credits_and_says_so(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice")
    bob = h.fake.user("bob").id
    await give_credits(h.sessions, bob, 2)

    click = await h.fake.click(grid, custom_id("v", job_id, 2), user="bob")

    copy = await h.job_of(click)
    ack = await h.fake.wait_for(
        lambda: click.original if click.original and "queued" in click.original.content else None
    )
    assert "on your credits" in ack.content and f"<@{h.fake.user('alice').id}>" in ack.content
    assert (copy.kind, copy.parent_index) == (JobKind.VARIATION, 2)
    assert await balance_of(h.sessions, bob) == 1


async def test_only_the_owner_may_delete_and_others_are_told_why(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice")
    pick = await h.fake.click(grid, custom_id("u", job_id, 0))
    single = await h.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )

    denied = await h.fake.click(single, custom_id("del", job_id, 0), user="bob")
    reply = await _ephemeral_reply(h, denied)
    assert "Only" in reply.content and "can delete" in reply.content
    assert not h.fake.messages[single.id].deleted

    allowed = await h.fake.click(single, custom_id("del", job_id, 0), user="alice")
    await h.fake.wait_for(lambda: h.fake.messages[single.id].deleted)
    assert "Deleted" in (await _ephemeral_reply(h, allowed)).content


async def test_publish_toggles_the_gallery_and_the_button(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice")
    pick = await h.fake.click(grid, custom_id("u", job_id, 0))
    single = await h.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )
    assert single.component(custom_id("pub", job_id, 0)).label == "Unpublish"  # public by default

    click = await h.fake.click(single, custom_id("pub", job_id, 0))

    await h.fake.wait_for(
        lambda: h.fake.messages[single.id].component(custom_id("pub", job_id, 0)).label == "Publish"
    )
    assert "Taken out" in (await _ephemeral_reply(h, click)).content
    job = await h.job(job_id)
    assert not job.images[0].public


async def test_cancel_on_the_acknowledgement_refunds(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 2)
    interaction = await h.fake.slash("imagine", {"prompt": "a cat"}, user="alice")
    job = await h.job_of(interaction)
    ack = await h.fake.wait_for(
        lambda: interaction.original if interaction.original and interaction.original.buttons else None
    )
    assert await balance_of(h.sessions, alice) == 1

    click = await h.fake.click(ack, custom_id("cancel", job.id, 0))

    await h.fake.wait_for(lambda: "Cancelled" in h.fake.messages[ack.id].content)
    assert "1 credit refunded" in (await _ephemeral_reply(h, click)).content
    assert (await h.job(job.id)).status == JobStatus.CANCELLED
    assert await balance_of(h.sessions, alice) == 2


async def test_cancel_on_a_rendering_job_stops_it_and_refunds_the_unrendered_share(harness: BotHarness) -> None:
    import json

    from sqlalchemy import func, select

    from core.tasks import JOB_EVENTS_CHANNEL, progress_channel, stop_key
    from db import repositories as repo

    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 5)
    interaction = await h.fake.slash("imagine", {"prompt": "a cat"}, user="alice")
    job = await h.job_of(interaction)
    async with h.sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=job.id)  # a worker renders it
    await h.bot.redis.publish(progress_channel(str(job.id)), json.dumps({"job_id": str(job.id), "step": 3, "total": 10}))
    rendering = await h.fake.wait_for(
        lambda: interaction.original
        if interaction.original and "step 3/10" in interaction.original.content and interaction.original.buttons
        else None
    )
    assert [b.label for b in rendering.buttons] == ["Cancel"]

    other = await h.fake.click(rendering, custom_id("cancel", job.id, 0), user="bob")
    assert "Only <@" in (await _ephemeral_reply(h, other)).content
    click = await h.fake.click(rendering, custom_id("cancel", job.id, 0), user="alice")
    assert "Stopping" in (await _ephemeral_reply(h, click)).content
    stopped = await h.job(job.id)
    assert stopped.status == JobStatus.RUNNING and stopped.cancel_requested_at is not None
    assert await h.bot.redis.exists(stop_key(str(job.id)))

    # The worker sees the key at its next step and ends the job (gpu_worker.stopping).
    async with h.sessions() as session, session.begin():
        assert await repo.finish_cancelled(session=session, job_id=job.id, rendered=0.3) == 1
        await session.execute(select(func.pg_notify(JOB_EVENTS_CHANNEL, str(job.id))))
    message = await h.fake.wait_for(
        lambda: h.fake.messages[rendering.id] if "Stopped" in h.fake.messages[rendering.id].content else None
    )
    assert "1 credit refunded for the part not rendered)" in message.content and not message.buttons
    assert (await h.delivered(job.id)).result_message_id == rendering.id
    assert await balance_of(h.sessions, alice) == 5


async def test_queue_lists_jobs_with_cancel_buttons(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)
    for prompt in ("a cat", "a dog"):
        await h.job_of(await h.fake.slash("imagine", {"prompt": prompt}, user="alice"))

    listing = await h.fake.slash("queue", user="alice")
    message = await h.fake.wait_for(
        lambda: listing.original if listing.original and listing.original.buttons else None
    )
    assert message.ephemeral and "a cat" in message.content and "a dog" in message.content
    assert [b.label for b in message.buttons] == ["Cancel 1", "Cancel 2"]

    await h.fake.click(message, message.buttons[0].custom_id or "")
    await h.fake.wait_for(lambda: len(h.fake.messages[message.id].buttons) == 1)
    assert await balance_of(h.sessions, alice) == 2


async def test_info_shows_credits_and_jobs(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 7)
    info = await h.fake.slash("info", user="alice")
    message = await h.fake.wait_for(
        lambda: info.original if info.original and not info.original.loading else None
    )
    assert message.ephemeral and "**Credits:** 7" in message.content and "**Queued:** 0" in message.content


async def test_show_reposts_a_job_with_working_buttons_for_its_owner_only(harness: BotHarness) -> None:
    h = harness
    _, job_id = await _grid(h, "alice")

    shown = await h.fake.slash("show", {"job_id": str(job_id)}, user="alice")
    message = await h.fake.wait_for(
        lambda: shown.original if shown.original and shown.original.attachments else None
    )
    assert len(message.buttons) == 9

    other = await h.fake.slash("show", {"job_id": str(job_id)}, user="bob")
    assert "no job of yours" in (await _ephemeral_reply(h, other)).content


async def test_settings_change_the_defaults_of_new_jobs(harness: BotHarness) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)
    opened = await h.fake.slash("settings", user="alice")
    panel = await h.fake.wait_for(
        lambda: opened.original if opened.original and opened.original.component_list else None
    )

    await h.fake.select(panel, "set:v1:ar", ["16:9"], user="alice")
    await h.fake.wait_for(
        lambda: any(
            o.get("default") and o["value"] == "16:9"
            for o in h.fake.messages[panel.id].component("set:v1:ar").options
        )
    )
    await h.fake.click(panel, "set:v1:remix", user="alice")
    await h.fake.wait_for(lambda: "Remix mode is **on**" in h.fake.messages[panel.id].content)
    await h.fake.select(panel, "set:v1:lane", ["relax"], user="alice")
    await h.fake.wait_for(
        lambda: any(
            o.get("default") and o["value"] == "relax"
            for o in h.fake.messages[panel.id].component("set:v1:lane").options
        )
    )

    job = await h.job_of(await h.fake.slash("imagine", {"prompt": "a cat"}, user="alice"))
    assert job.params["aspect_ratio"] == [16, 9] and job.lane is Lane.RELAX and job.cost == 0


async def test_remix_mode_opens_the_prompt_before_a_variation(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice", prompt="a red barn")
    opened = await h.fake.slash("settings", user="alice")
    panel = await h.fake.wait_for(
        lambda: opened.original if opened.original and opened.original.component_list else None
    )
    await h.fake.click(panel, "set:v1:remix", user="alice")
    await h.fake.wait_for(lambda: "Remix mode is **on**" in h.fake.messages[panel.id].content)

    click = await h.fake.click(grid, custom_id("v", job_id, 0), user="alice")
    modal = await h.fake.wait_for(lambda: click.modal)
    field = modal["components"][0]["components"][0]
    assert field["value"].startswith("a red barn")

    submitted = await h.fake.submit_modal(click, {field["custom_id"]: "a blue barn"}, user="alice")

    job = await h.job_of(submitted)
    assert job.prompt == "a blue barn" and job.parent_id == job_id and job.kind is JobKind.VARIATION


@pytest.mark.parametrize(("code", "kind", "variant"), [("z2", JobKind.ZOOM, "2"), ("pl", JobKind.PAN, "left")])
async def test_remix_mode_opens_the_prompt_before_a_zoom_or_pan(
    harness: BotHarness, code: str, kind: JobKind, variant: str
) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice", prompt="a red barn")
    opened = await h.fake.slash("settings", user="alice")
    panel = await h.fake.wait_for(
        lambda: opened.original if opened.original and opened.original.component_list else None
    )
    await h.fake.click(panel, "set:v1:remix", user="alice")
    await h.fake.wait_for(lambda: "Remix mode is **on**" in h.fake.messages[panel.id].content)
    pick = await h.fake.click(grid, custom_id("u", job_id, 1), user="alice")
    single = await h.fake.wait_for(lambda: pick.original if pick.original and pick.original.attachments else None)

    click = await h.fake.click(single, custom_id(code, job_id, 1), user="alice")
    modal = await h.fake.wait_for(lambda: click.modal)
    field = modal["components"][0]["components"][0]
    assert field["value"].startswith("a red barn")
    submitted = await h.fake.submit_modal(click, {field["custom_id"]: "a red barn in a wide meadow"}, user="alice")

    job = await h.job_of(submitted)
    assert (job.kind, job.variant, job.parent_id, job.parent_index) == (kind, variant, job_id, 1)
    assert job.prompt == "a red barn in a wide meadow"


async def test_custom_zoom_takes_a_factor_and_a_new_prompt(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice", prompt="a red barn")
    pick = await h.fake.click(grid, custom_id("u", job_id, 2), user="alice")
    single = await h.fake.wait_for(lambda: pick.original if pick.original and pick.original.attachments else None)
    assert "Custom Zoom" in [b.label for b in single.buttons]

    refused = await h.fake.click(single, custom_id("zc", job_id, 2), user="alice")
    modal = await h.fake.wait_for(lambda: refused.modal)
    field = modal["components"][0]["components"][0]
    assert modal["title"] == "Custom Zoom" and field["value"].startswith("a red barn") and field["value"].endswith("--zoom 2")
    bad = await h.fake.submit_modal(refused, {field["custom_id"]: "a red barn --zoom 3"}, user="alice")
    reply = await _ephemeral_reply(h, bad)
    assert "--zoom takes 1.1 to 2, not 3" in reply.content and "Nothing was charged" in reply.content

    click = await h.fake.click(single, custom_id("zc", job_id, 2), user="alice")
    modal = await h.fake.wait_for(lambda: click.modal)
    field = modal["components"][0]["components"][0]
    submitted = await h.fake.submit_modal(click, {field["custom_id"]: "a red barn at dusk --zoom 1.74"}, user="alice")

    job = await h.job_of(submitted)
    assert (job.kind, job.variant, job.parent_id, job.parent_index) == (JobKind.ZOOM, "1.75", job_id, 2)
    assert job.prompt == "a red barn at dusk"


async def test_vary_region_offers_regions_and_queues_the_chosen_one(harness: BotHarness) -> None:
    h = harness
    grid, job_id = await _grid(h, "alice")
    pick = await h.fake.click(grid, custom_id("u", job_id, 3))
    single = await h.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )

    click = await h.fake.click(single, custom_id("vr", job_id, 3))
    menu = await h.fake.wait_for(
        lambda: click.original if click.original and click.original.component_list else None
    )
    assert menu.ephemeral
    choose = await h.fake.select(menu, custom_id("rgn", job_id, 3), ["left"], user="alice")

    job = await h.job_of(choose)
    assert (job.kind, job.variant, job.parent_index) == (JobKind.REGION, "left", 3)


async def test_models_lists_the_tiny_model(harness: BotHarness) -> None:
    h = harness
    listing = await h.fake.slash("models", user="alice")
    message = await h.fake.wait_for(
        lambda: listing.original if listing.original and not listing.original.loading else None
    )
    assert "`tiny` (default)" in message.content


async def test_imagine_suggests_models_and_samplers_and_checks_them_again_on_submit(
    harness: BotHarness,
) -> None:
    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)

    models = await h.fake.autocomplete("imagine", {"prompt": "a cat", "model": "ti"}, "model", user="alice")
    samplers = await h.fake.autocomplete("imagine", {"prompt": "a cat", "sampler": "dpm2mk"}, "sampler")
    await h.fake.wait_for(lambda: models.choices is not None and samplers.choices is not None)
    assert [c["value"] for c in models.choices or []] == ["tiny"]
    assert (samplers.choices or [])[0]["value"] == "DPM++ 2M Karras"
    assert len(samplers.choices or []) <= 25

    chosen = await h.fake.slash(
        "imagine", {"prompt": "a cat", "model": "tiny", "sampler": "DPM++ 2M Karras"}, user="alice"
    )
    job = await h.job_of(chosen)
    assert job.model == "tiny" and job.params["sampler"] == "DPM++ 2M Karras"

    # Typed values that autocomplete never offered are refused like bad flags, free of charge.
    for options, said in (
        ({"model": "nope"}, "nope"),
        ({"lora": "film"}, "film"),
        ({"sampler": "Warp Drive"}, "--sampler"),
    ):
        refused = await h.fake.slash("imagine", {"prompt": "a dog", **options}, user="alice")
        reply = await _ephemeral_reply(h, refused)
        assert said in reply.content, reply.content
    assert await balance_of(h.sessions, alice) == 2


async def test_a_model_no_worker_serves_is_refused_before_charging(harness: BotHarness) -> None:
    import time

    from core.workers import WorkerPresence, last_served_key, presence_key

    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)

    async def announce(worker_id: str, *models: str) -> None:
        record = WorkerPresence(worker_id=worker_id, models=models, lanes=("fast", "relax"))
        await h.bot.redis.set(presence_key(worker_id), record.to_json(), ex=60)
        h.bot.workers._cached = None  # no waiting out the cache

    await announce("gpu-1", "shapes")
    refused = await h.fake.slash("imagine", {"prompt": "a cat --model tiny"}, user="alice")
    reply = await _ephemeral_reply(h, refused)
    assert "No worker serves **tiny** right now" in reply.content and "nothing was queued or charged" in reply.content
    assert await balance_of(h.sessions, alice) == 3

    listing = await h.fake.slash("models", user="alice")
    message = await h.fake.wait_for(
        lambda: listing.original if listing.original and not listing.original.loading else None
    )
    assert "⚪ no worker now · `tiny`" in message.content and "🟢 1 worker · `shapes`" in message.content

    await announce("gpu-2", "tiny")
    accepted = await h.fake.slash("imagine", {"prompt": "a cat --model tiny"}, user="alice")
    assert (await h.job_of(accepted)).model == "tiny"
    assert await balance_of(h.sessions, alice) == 2

    # The worker of tiny goes away for good: after the grace period its queued job is refunded.
    from bot.services.workers import fail_unserved_jobs

    await h.bot.redis.delete(presence_key("gpu-2"))
    await h.bot.redis.set(last_served_key("tiny"), f"{time.time() - 3600:.3f}")
    h.bot.workers._cached = None
    job = await h.job_of(accepted)
    assert await fail_unserved_jobs(h.sessions, h.bot.workers, grace_s=60) == []  # it has not waited yet
    from sqlalchemy import text

    async with h.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE jobs SET queued_at = now() - interval '2 minutes' WHERE id = :id"), {"id": job.id}
        )
    assert await fail_unserved_jobs(h.sessions, h.bot.workers, grace_s=60) == [job.id]
    ended = await h.delivered(job.id)
    assert ended.status == JobStatus.FAILED and "no worker served the model tiny" in (ended.error or "")
    assert await balance_of(h.sessions, alice) == 3


async def test_the_bot_counts_refusals_submissions_deliveries_and_the_queue(harness: BotHarness) -> None:
    from prometheus_client import REGISTRY

    from bot.services.jobs import record_queue_depth

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 2)
    refused_before = value("imaginarium_refusals_total", reason="prompt")
    submitted_before = value("imaginarium_jobs_submitted_total", kind="imagine", lane="fast", model="tiny")
    delivered_before = value("imaginarium_deliveries_total", outcome="edited")

    bad = await h.fake.slash("imagine", {"prompt": "a cat --ar 9:1"}, user="alice")
    await _ephemeral_reply(h, bad)
    assert value("imaginarium_refusals_total", reason="prompt") == refused_before + 1

    job = await h.job_of(await h.fake.slash("imagine", {"prompt": "a cat"}, user="alice"))
    await h.fake.wait_for(  # counted once its task is sent, just after the row is committed
        lambda: value("imaginarium_jobs_submitted_total", kind="imagine", lane="fast", model="tiny")
        == submitted_before + 1
    )
    assert (await record_queue_depth(h.sessions))[("fast", "tiny")] == 1
    assert value("imaginarium_queue_depth", lane="fast", model="tiny") == 1

    await h.finish(job.id)
    await h.delivered(job.id)
    assert value("imaginarium_deliveries_total", outcome="edited") == delivered_before + 1
    assert (await record_queue_depth(h.sessions)).get(("fast", "tiny")) is None
    assert value("imaginarium_queue_depth", lane="fast", model="tiny") == 0


async def test_queue_offers_to_stop_a_rendering_job(harness: BotHarness) -> None:
    from db import repositories as repo

    h = harness
    alice = h.fake.user("alice").id
    await give_credits(h.sessions, alice, 3)
    running = await h.job_of(await h.fake.slash("imagine", {"prompt": "a cat"}, user="alice"))
    await h.job_of(await h.fake.slash("imagine", {"prompt": "a dog"}, user="alice"))
    async with h.sessions() as session, session.begin():
        await repo.claim_job(session=session, job_id=running.id)

    listing = await h.fake.slash("queue", user="alice")
    message = await h.fake.wait_for(
        lambda: listing.original if listing.original and listing.original.buttons else None
    )
    assert "R1. rendering" in message.content and "a cat" in message.content
    assert [b.label for b in message.buttons] == ["Stop R1", "Cancel 1"]

    click = await h.fake.click(message, message.buttons[0].custom_id or "", user="alice")
    await h.fake.wait_for(lambda: next((m for m in click.followups if "Stopping" in m.content), None))
    assert (await h.job(running.id)).cancel_requested_at is not None
