"""Token expiry, rate limits, server errors, late acknowledgements and gateway reconnects."""

from __future__ import annotations

import discord

from tests.fake_discord import FakeDiscord
from tests.fake_discord_tests.demo_bot import DemoBot


async def test_expired_interaction_token_answers_50027(fake: FakeDiscord, demo: DemoBot) -> None:
    fake.interaction_token_ttl = 0.3
    later = await fake.slash("later", {"seconds": 0.6})
    fallback = await fake.wait_for_message(lambda m: "token expired" in m.content, channel="general")

    assert later.response is not None and later.response.type == 5
    assert later.followups == []
    assert fallback.content.endswith("(token expired: 50027)")
    rejected = [r for r in fake.requests if r.route == "POST /webhooks/{webhook_id}/{webhook_token}"]
    assert [(r.status, r.error_code) for r in rejected] == [(401, 50027)]
    [error] = demo.errors
    assert isinstance(error, discord.HTTPException)
    assert (error.status, error.code, error.text) == (401, 50027, "Invalid Webhook Token")


async def test_rate_limited_followup_is_retried_by_discord_py(fake: FakeDiscord, demo: DemoBot) -> None:
    failure = fake.fail_next("POST /webhooks/{webhook_id}/{webhook_token}", count=2, retry_after=0.1)
    ping = await fake.slash("ping")
    await fake.wait_for(lambda: ping.followups, what="the follow-up")

    assert failure.remaining == 0
    calls = [
        (r.status, r.injected)
        for r in fake.requests
        if r.route == "POST /webhooks/{webhook_id}/{webhook_token}"
    ]
    assert calls == [(429, True), (429, True), (200, False)]
    assert ping.followups[0].content == "pong"


async def test_rate_limited_and_failing_channel_routes_are_retried(fake: FakeDiscord, demo: DemoBot) -> None:
    fake.fail_next("POST /channels/{channel_id}/messages", retry_after=0.1)
    fake.fail_next("PATCH /channels/{channel_id}/messages/{message_id}", status=502)
    await fake.slash("post", {"text": "retry me"})
    message = await fake.wait_for_message(lambda m: bool(m.reactions), timeout=15)

    assert message.content == "retry me (edited)"
    statuses = [
        (r.route.split()[0], r.status)
        for r in fake.requests
        if r.route.startswith(("POST /channels", "PATCH /channels"))
    ]
    assert statuses == [("POST", 429), ("POST", 200), ("PATCH", 502), ("PATCH", 200)]


async def test_late_acknowledgement_is_unknown_interaction(fake: FakeDiscord, demo: DemoBot) -> None:
    fake.ack_deadline = 0.0
    ping = await fake.slash("ping")
    await fake.wait_for(lambda: any(r.error_code == 10062 for r in fake.requests), what="the late callback")

    assert ping.response is None
    assert ping.expired


async def test_bot_resumes_after_the_connection_drops(fake: FakeDiscord, demo: DemoBot) -> None:
    [session] = fake.gateway.sessions.values()
    await fake.drop_gateway(code=4000)
    await fake.wait_for(lambda: session.resumes == 1 and session.connected, what="the RESUME")

    ping = await fake.slash("ping")
    await fake.wait_for(lambda: ping.followups, what="the follow-up")
    assert fake.gateway.identify_count == 1


async def test_bot_identifies_again_after_an_invalid_session(fake: FakeDiscord, demo: DemoBot) -> None:
    # discord.py re-identifies at DiscordWebSocket.DEFAULT_GATEWAY, which
    # bot.discord_endpoints pointed at the fake.
    await fake.invalidate_sessions()
    await fake.wait_for(lambda: fake.gateway.identify_count == 2 and fake.gateway.active(), timeout=20)

    ping = await fake.slash("ping")
    await fake.wait_for(lambda: ping.followups, what="the follow-up")


async def test_reconnect_request_resumes(fake: FakeDiscord, demo: DemoBot) -> None:
    [session] = fake.gateway.sessions.values()
    await fake.request_reconnect()
    await fake.wait_for(lambda: session.resumes == 1 and session.connected, what="the RESUME")
    assert fake.gateway.identify_count == 1
