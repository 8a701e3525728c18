"""The real discord.py client (the demo bot, in this process) against the fake Discord."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from tests.fake_discord import FakeDiscord, FakeDiscordError
from tests.fake_discord_tests.demo_bot import DemoBot, png_bytes


async def test_bot_logs_in_connects_and_syncs_commands(fake: FakeDiscord, demo: DemoBot) -> None:
    routes = [r.route for r in fake.requests]
    assert "GET /users/@me" in routes
    assert "GET /oauth2/applications/@me" in routes
    assert "GET /gateway/bot" in routes
    assert "PUT /applications/{application_id}/commands" in routes
    synced = {c["name"]: c for c in fake.command_syncs[-1].commands}
    assert set(synced) == {"ping", "upload", "post", "later", "feedback", "pick", "settings"}
    assert synced["ping"]["description"] == "Reply with a picture and buttons."
    assert fake.gateway.identify_count == 1
    assert fake.unhandled_requests == []
    await fake.wait_for(lambda: demo.is_ready(), what="the bot's on_ready")
    guild = demo.get_guild(fake.default_guild.id)
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"general", "nsfw-art"}
    assert guild.get_channel(fake.channel("nsfw-art").id).is_nsfw()  # type: ignore[union-attr]


async def test_slash_defer_then_followup_with_file_and_buttons(fake: FakeDiscord, demo: DemoBot) -> None:
    ping = await fake.slash("ping", {"text": "hi"})
    await fake.wait_for(lambda: ping.followups, what="the follow-up")

    assert ping.response is not None
    assert ping.response.type == 5
    assert ping.ack_latency is not None and 0 <= ping.ack_latency < 3
    # The first follow-up after a "thinking" defer becomes the response message itself.
    message = ping.followups[0]
    assert message is ping.original
    assert not message.loading and not message.ephemeral
    assert message.content == "pong hi"
    [attachment] = message.attachments
    assert attachment.filename == "pong.png"
    assert attachment.data == png_bytes()
    assert attachment.size == len(png_bytes())
    assert (attachment.width, attachment.height) == (8, 8)
    assert [(b.custom_id, b.label, b.style, b.emoji_name) for b in message.buttons] == [
        ("demo:v1:again:1", "Again (1)", 1, "🔁"),
        ("demo:v1:done", "Done", 3, None),
    ]
    async with aiohttp.ClientSession() as http, http.get(attachment.url) as resp:
        assert resp.status == 200
        assert await resp.read() == png_bytes()
    kinds = [(e.kind, e.via) for e in fake.message_events if e.message_id == message.id]
    assert kinds == [("create", "interaction_callback"), ("edit", "webhook")]


async def test_click_edits_the_message_in_place(fake: FakeDiscord, demo: DemoBot) -> None:
    ping = await fake.slash("ping")
    message = await ping.wait_for_followup()
    click = await fake.click(message, "demo:v1:again:1")
    response = await click.wait_for_response()

    assert response.type == 7
    assert message.content == "pong #2"
    assert message.custom_ids == ["demo:v1:again:2", "demo:v1:done"]
    assert message.history[-1]["content"] == "pong"
    assert click.original is message


async def test_click_defers_then_edits_original_through_webhook(fake: FakeDiscord, demo: DemoBot) -> None:
    ping = await fake.slash("ping")
    message = await ping.wait_for_followup()
    click = await fake.click(message, "demo:v1:done", user="bob")
    await fake.wait_for(lambda: message.content == "done", what="the edit")

    assert click.response is not None and click.response.type == 6
    assert click.user.username == "bob"
    assert message.components == []
    assert fake.message_events[-1].via == "webhook"
    with pytest.raises(KeyError):
        message.component("demo:v1:done")


async def test_attachment_option_is_served_to_the_bot(fake: FakeDiscord, demo: DemoBot) -> None:
    data = png_bytes("green", (16, 12))
    upload = await fake.slash("upload", attachments={"image": ("cat.png", data)})
    message = await upload.wait_for_followup()

    assert message.content == f"cat.png {len(data)} 16x12 {hashlib.sha256(data).hexdigest()}"
    assert message.ephemeral  # inherited from defer(ephemeral=True)
    assert upload.response is not None and upload.response.ephemeral


async def test_channel_message_is_posted_edited_and_reacted(fake: FakeDiscord, demo: DemoBot) -> None:
    post = await fake.slash("post", {"text": "hello"}, channel="general")
    message = await fake.wait_for_message(lambda m: bool(m.reactions), channel="general")

    assert post.response is not None and post.response.type == 4 and post.response.ephemeral
    assert post.original is not None and post.original.content == "posting"
    assert message.content == "hello (edited)"
    assert message.interaction_id is None
    [attachment] = message.attachments
    assert attachment.spoiler
    assert message.reactions == {"✅": {fake.bot_user.id}}
    kinds = [e.kind for e in fake.message_events if e.message_id == message.id]
    assert kinds == ["create", "edit", "edit"]


async def test_modal_is_shown_and_submitted(fake: FakeDiscord, demo: DemoBot) -> None:
    feedback = await fake.slash("feedback")
    await feedback.wait_for_response()
    assert feedback.modal is not None and feedback.modal["title"] == "Feedback"

    submit = await fake.submit_modal(feedback, {"demo:text": "lovely"})
    await submit.wait_for_response()
    assert submit.original is not None
    assert submit.original.content == "thanks: lovely"
    assert submit.original.ephemeral
    with pytest.raises(FakeDiscordError):
        await fake.submit_modal(feedback, {"nope": "x"})


async def test_autocomplete_choices_and_subcommands(fake: FakeDiscord, demo: DemoBot) -> None:
    ac = await fake.autocomplete("pick", {"flavour": "ch"}, focused="flavour")
    await ac.wait_for_response()
    assert ac.response is not None and ac.response.type == 8
    assert ac.choices == [{"name": "chocolate", "value": "chocolate"}]

    pick = await fake.slash("pick", {"flavour": "vanilla", "size": 2})
    await pick.wait_for_response()
    assert pick.original is not None and pick.original.content == "big vanilla"
    with pytest.raises(FakeDiscordError, match="choices"):
        await fake.slash("pick", {"flavour": "vanilla", "size": 3})
    with pytest.raises(FakeDiscordError, match="required"):
        await fake.slash("pick", {"flavour": "vanilla"})

    show = await fake.slash("settings show", {"member": "bob", "public": True})
    await show.wait_for_response()
    assert show.original is not None and show.original.content == "settings of bob"
    assert not show.original.ephemeral


async def test_slash_command_in_a_direct_message(fake: FakeDiscord, demo: DemoBot) -> None:
    alice = fake.user("alice")
    dm = fake.dm_channel(alice)
    ping = await fake.slash("ping", {"text": "dm"}, user=alice, channel=dm)
    message = await ping.wait_for_followup()

    assert ping.guild_id is None and "member" not in ping.payload
    assert message.channel_id == dm.id and message.guild_id is None
    assert message.content == "pong dm"
