"""The fake's REST and gateway protocol, driven with a bare aiohttp client (no discord.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fake_discord import FakeDiscord, FakeDiscordError, make_guild


class Gateway:
    """A minimal gateway client: reads dispatches in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seq = 0

    async def receive(self) -> dict[str, Any]:
        packet = json.loads((await self.ws.receive(timeout=5)).data)
        if packet.get("s"):
            self.seq = packet["s"]
        return packet

    async def event(self, name: str) -> dict[str, Any]:
        while True:
            packet = await self.receive()
            if packet.get("t") == name:
                return packet["d"]


@pytest.fixture
async def http(fake: FakeDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {fake.token}"}) as session:
        yield session


async def identify(http: aiohttp.ClientSession, fake: FakeDiscord, intents: int = 1 << 9) -> Gateway:
    ws = await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")
    gateway = Gateway(ws)
    hello = await gateway.receive()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 41250
    await ws.send_json({"op": 1, "d": None})
    assert (await gateway.receive())["op"] == 11
    await ws.send_json(
        {"op": 2, "d": {"token": fake.token, "intents": intents, "properties": {}, "shard": [0, 1]}}
    )
    return gateway


async def test_gateway_ready_guilds_and_resume(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    gateway = await identify(http, fake)
    ready = await gateway.event("READY")
    assert ready["user"]["id"] == str(fake.bot_user.id)
    assert ready["resume_gateway_url"] == fake.gateway_url
    assert ready["guilds"] == [{"id": str(fake.default_guild.id), "unavailable": True}]
    guild = await gateway.event("GUILD_CREATE")
    channels = {c["name"]: c["nsfw"] for c in guild["channels"]}
    assert channels == {"general": False, "nsfw-art": True}
    assert {m["user"]["username"] for m in guild["members"]} == {"alice", "bob", "Imaginarium"}
    await fake.wait_ready()

    # Commands must be synced before a user can run them.
    with pytest.raises(FakeDiscordError, match="not a synced command"):
        await fake.slash("ping")
    async with http.put(
        f"{fake.api_base}/applications/{fake.application_id}/commands",
        json=[
            {
                "name": "ping",
                "description": "Ping",
                "options": [{"type": 3, "name": "text", "description": "t"}],
            }
        ],
    ) as resp:
        [command] = await resp.json()
    ping = await fake.slash("ping", {"text": "hi"})
    event = await gateway.event("INTERACTION_CREATE")
    assert event["data"] == {
        "id": command["id"],
        "name": "ping",
        "type": 1,
        "options": [{"name": "text", "type": 3, "value": "hi"}],
    }
    assert event["token"] == ping.token
    assert event["member"]["user"]["username"] == "alice"

    # Drop the socket, miss an event, RESUME: the missed event is replayed.
    session_id, seq = ready["session_id"], gateway.seq
    await gateway.ws.close()
    await fake.wait_for(lambda: fake.gateway.active() is None)
    missed = await fake.post_user_message("general", "while you were away")
    ws = await http.ws_connect(fake.gateway_url)
    resumed = Gateway(ws)
    await resumed.receive()  # HELLO
    await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": session_id, "seq": seq}})
    replayed = await resumed.event("MESSAGE_CREATE")
    assert replayed["id"] == str(missed.id)
    await resumed.event("RESUMED")
    await ws.close()


async def test_gateway_rejects_bad_token_and_unknown_session(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(fake.gateway_url)
    await ws.receive()
    await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
    msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004

    ws = await http.ws_connect(fake.gateway_url)
    await ws.receive()
    await ws.send_json({"op": 6, "d": {"token": fake.token, "session_id": "nope", "seq": 3}})
    assert json.loads((await ws.receive()).data) == {"op": 9, "d": False}
    await ws.close()


async def test_request_guild_members_gets_one_chunk(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    gateway = await identify(http, fake, intents=(1 << 0) | (1 << 1))
    await gateway.event("GUILD_CREATE")
    await gateway.ws.send_json(
        {"op": 8, "d": {"guild_id": str(fake.default_guild.id), "query": "b", "limit": 0, "nonce": "n1"}}
    )
    chunk = await gateway.event("GUILD_MEMBERS_CHUNK")
    assert [m["user"]["username"] for m in chunk["members"]] == ["bob"]
    assert (chunk["chunk_index"], chunk["chunk_count"], chunk["nonce"]) == (0, 1, "n1")
    await gateway.ws.close()


async def test_rest_requires_the_bot_token(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as anon, anon.get(f"{fake.api_base}/users/@me") as resp:
        assert resp.status == 401
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == {"message": "401: Unauthorized", "code": 0}


async def test_gateway_bot_and_unknown_routes(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{fake.api_base}/gateway/bot") as resp:
        data = await resp.json()
    assert data["url"] == fake.gateway_url and data["shards"] == 1
    assert data["session_start_limit"]["max_concurrency"] == 1
    async with http.get(f"{fake.api_base}/stage-instances/1") as resp:
        assert resp.status == 404
    assert fake.unhandled_requests == ["GET /api/v10/stage-instances/1"]


async def test_channel_message_limits(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    url = f"{fake.api_base}/channels/{fake.channel('general').id}/messages"
    async with http.post(url, json={"content": ""}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 50006)
    async with http.post(url, json={"content": "x" * 2001}) as resp:
        body = await resp.json()
    assert (resp.status, body["code"]) == (400, 50035)
    assert body["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"
    button = {"type": 2, "style": 1, "label": "A", "custom_id": "same"}
    async with http.post(
        url, json={"content": "hi", "components": [{"type": 1, "components": [button, button]}]}
    ) as resp:
        body = await resp.json()
    assert body["code"] == 50035 and "COMPONENT_CUSTOM_ID_DUPLICATED" in json.dumps(body["errors"])
    async with http.post(
        url,
        json={
            "content": "hi",
            "components": [{"type": 1, "components": [{**button, "custom_id": "x" * 101}]}],
        },
    ) as resp:
        assert resp.status == 400
    async with http.post(f"{fake.api_base}/channels/1/messages", json={"content": "hi"}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (404, 10003)
    fake.upload_limit = 10
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps({"content": "big"}))
    form.add_field("files[0]", b"x" * 11, filename="big.bin")
    async with http.post(url, data=form) as resp:
        assert (resp.status, (await resp.json())["code"]) == (413, 40005)
    assert fake.messages == {}


async def test_multipart_attachments_kept_and_replaced_on_edit(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    channel = fake.channel("nsfw-art")
    form = aiohttp.FormData(quote_fields=False)
    form.add_field(
        "payload_json",
        json.dumps(
            {
                "content": "two",
                "attachments": [
                    {"id": 0, "filename": "SPOILER_a.png"},
                    {"id": 1, "filename": "b.txt", "description": "bee"},
                ],
            }
        ),
    )
    form.add_field("files[0]", b"aaa", filename="SPOILER_a.png", content_type="application/octet-stream")
    form.add_field("files[1]", b"bb", filename="b.txt", content_type="application/octet-stream")
    async with http.post(f"{fake.api_base}/channels/{channel.id}/messages", data=form) as resp:
        created = await resp.json()
    message = fake.messages[int(created["id"])]
    assert [(a.filename, a.data, a.spoiler, a.content_type) for a in message.attachments] == [
        ("SPOILER_a.png", b"aaa", True, "image/png"),
        ("b.txt", b"bb", False, "text/plain"),
    ]
    assert created["attachments"][1]["description"] == "bee"
    keep = created["attachments"][1]
    async with http.patch(
        f"{fake.api_base}/channels/{channel.id}/messages/{message.id}", json={"attachments": [keep]}
    ) as resp:
        edited = await resp.json()
    assert [a["filename"] for a in edited["attachments"]] == ["b.txt"]
    async with http.get(keep["url"]) as resp:
        assert await resp.read() == b"bb"
    async with http.delete(f"{fake.api_base}/channels/{channel.id}/messages/{message.id}") as resp:
        assert resp.status == 204
    assert message.deleted
    assert [e.kind for e in fake.message_events] == ["create", "edit", "delete"]


async def test_injected_rate_limit_and_server_error(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    fake.fail_next("GET /users/@me", retry_after=1.5)
    fake.fail_next("/users/@me", status=503, count=1)
    fake.fail_next("GET /gateway/bot", is_global=True, retry_after=0.5)
    async with http.get(f"{fake.api_base}/users/@me") as resp:
        assert resp.status == 429
        assert resp.headers["Via"] and resp.headers["Retry-After"] == "2"
        assert resp.headers["X-RateLimit-Remaining"] == "0"
        assert await resp.json() == {
            "message": "You are being rate limited.",
            "retry_after": 1.5,
            "global": False,
        }
    async with http.get(f"{fake.api_base}/users/@me") as resp:
        assert resp.status == 503
    async with http.get(f"{fake.api_base}/users/@me") as resp:
        assert resp.status == 200
    async with http.get(f"{fake.api_base}/gateway/bot") as resp:
        assert resp.status == 429 and resp.headers["X-RateLimit-Global"] == "true"
        assert (await resp.json())["global"] is True
    assert [r.injected for r in fake.requests] == [True, True, False, True]


async def test_webhook_token_rules(fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    gateway = await identify(http, fake)
    await gateway.event("GUILD_CREATE")
    async with http.put(
        f"{fake.api_base}/applications/{fake.application_id}/commands",
        json=[{"name": "ping", "description": "Ping"}],
    ):
        pass
    ping = await fake.slash("ping", user="bob")
    hook = f"{fake.api_base}/webhooks/{fake.application_id}/{ping.token}"
    callback = f"{fake.api_base}/interactions/{ping.id}/{ping.token}/callback"

    async with http.post(hook, json={"content": "too early"}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (404, 10015)
    async with http.post(
        callback, params={"with_response": "true"}, json={"type": 7, "data": {"content": "x"}}
    ) as resp:
        assert (await resp.json())["code"] == 50035
    async with http.post(
        callback, params={"with_response": "true"}, json={"type": 5, "data": {"flags": 64}}
    ) as resp:
        body = await resp.json()
    assert body["interaction"]["response_message_loading"] is True
    assert body["resource"]["message"]["flags"] == 64 | 128
    async with http.post(callback, json={"type": 4, "data": {"content": "again"}}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 40060)
    async with http.patch(f"{hook}/messages/@original", json={"content": "ready"}) as resp:
        original = await resp.json()
    assert (original["content"], original["flags"]) == ("ready", 64)
    async with http.post(hook, json={"content": "second"}) as resp:
        second = await resp.json()
    assert second["id"] != original["id"]
    assert [m.content for m in ping.followups] == ["second"]
    async with http.get(f"{hook}/messages/{second['id']}") as resp:
        assert resp.status == 200
    async with http.get(f"{fake.api_base}/channels/{ping.channel_id}/messages/{original['id']}") as resp:
        assert (await resp.json())["code"] == 10008  # ephemeral: not visible through the channel

    fake.expire(ping)
    for method, url in (
        ("POST", hook),
        ("PATCH", f"{hook}/messages/@original"),
        ("DELETE", f"{hook}/messages/{second['id']}"),
    ):
        async with http.request(method, url, json={"content": "late"}) as resp:
            assert resp.status == 401
            assert await resp.json() == {"message": "Invalid Webhook Token", "code": 50027}
    async with http.post(f"{fake.api_base}/webhooks/1/{ping.token}", json={"content": "x"}) as resp:
        assert (await resp.json())["code"] == 10015
    await gateway.ws.close()


async def test_two_shards_split_the_guilds() -> None:
    guilds = [make_guild(f"g{i}") for i in range(4)]
    async with FakeDiscord(guilds, shard_count=2) as fake, aiohttp.ClientSession() as http:
        seen: dict[int, set[str]] = {}
        sockets = []
        for shard in (0, 1):
            ws = await http.ws_connect(fake.gateway_url)
            sockets.append(ws)
            gateway = Gateway(ws)
            await gateway.receive()
            await ws.send_json(
                {"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}, "shard": [shard, 2]}}
            )
            ready = await gateway.event("READY")
            seen[shard] = {g["id"] for g in ready["guilds"]}
        await fake.wait_ready()
        assert seen[0] | seen[1] == {str(g.id) for g in guilds}
        assert not seen[0] & seen[1]
        for guild in guilds:
            assert (guild.id >> 22) % 2 in seen and str(guild.id) in seen[(guild.id >> 22) % 2]
        for ws in sockets:
            await ws.close()
        await asyncio.sleep(0)


async def test_clicks_and_selects_follow_the_components(
    fake: FakeDiscord, http: aiohttp.ClientSession
) -> None:
    gateway = await identify(http, fake)
    await gateway.event("GUILD_CREATE")
    components = [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 1, "label": "Go", "custom_id": "go"},
                {"type": 2, "style": 2, "label": "Off", "custom_id": "off", "disabled": True},
                {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"},
            ],
        },
        {
            "type": 1,
            "components": [
                {
                    "type": 3,
                    "custom_id": "size",
                    "options": [{"label": "S", "value": "s"}, {"label": "L", "value": "l"}],
                }
            ],
        },
    ]
    url = f"{fake.api_base}/channels/{fake.channel('general').id}/messages"
    async with http.post(url, json={"content": "choose", "components": components}) as resp:
        message = fake.messages[int((await resp.json())["id"])]
    assert [(b.label, b.disabled, b.url) for b in message.buttons] == [
        ("Go", False, None),
        ("Off", True, None),
        ("Docs", False, "https://example.com"),
    ]
    with pytest.raises(FakeDiscordError, match="disabled"):
        await fake.click(message, "off")
    with pytest.raises(KeyError):
        await fake.click(message, "missing")
    with pytest.raises(FakeDiscordError, match="no option"):
        await fake.select(message, "size", ["xl"])

    click = await fake.click(message, "go", user="bob")
    event = await gateway.event("INTERACTION_CREATE")
    assert event["data"] == {"custom_id": "go", "component_type": 2}
    assert event["message"]["id"] == str(message.id)
    assert event["member"]["user"]["username"] == "bob"
    assert click.message_id == message.id

    await fake.select(message, "size", ["l"])
    event = await gateway.event("INTERACTION_CREATE")
    assert event["data"] == {"custom_id": "size", "component_type": 3, "values": ["l"]}
    await gateway.ws.close()


def test_mentions_follow_allowed_mentions_as_discord_documents() -> None:
    from tests.fake_discord import errors
    from tests.fake_discord.store import mentions_of

    text = "<@111111111111111111> <@!222222222222222222> @everyone"
    assert mentions_of(text, None) == ([111111111111111111, 222222222222222222], True)  # none given: all
    assert mentions_of(text, {"parse": []}) == ([], False)
    assert mentions_of(text, {"parse": ["users"]}) == ([111111111111111111, 222222222222222222], False)
    assert mentions_of(text, {"parse": [], "users": ["222222222222222222"]}) == ([222222222222222222], False)
    assert mentions_of(text, {"parse": ["everyone"]}) == ([], True)
    with pytest.raises(errors.DiscordError):
        mentions_of(text, {"parse": ["users"], "users": ["111111111111111111"]})
