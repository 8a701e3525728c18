"""The fake gateway: one websocket per shard connection, speaking Discord's JSON protocol.

It implements what discord.py needs to come up and stay up: HELLO, heartbeats and their
ACKs, IDENTIFY -> READY + one GUILD_CREATE per guild of the shard, RESUME with a replay of
missed events, REQUEST_GUILD_MEMBERS -> one GUILD_MEMBERS_CHUNK, and the server-side
RECONNECT / INVALID_SESSION / close codes a test uses to make the client reconnect.

Frames go out as uncompressed text: discord.py asks for zlib/zstd transport compression
in the URL but reads text frames as plain JSON (``DiscordWebSocket.received_message``),
so the fake does not need to compress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fake_discord.models import JSON, FakeGuild

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

_log = logging.getLogger(__name__)

# Opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

# Intents the fake looks at.
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content

REPLAY_BUFFER = 1000


@dataclass
class GatewaySession:
    """One identified gateway session (a shard); it outlives its websocket until RESUME or a new IDENTIFY."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    identified_at: float
    ws: web.WebSocketResponse | None = None
    seq: int = 0
    heartbeats: int = 0
    resumes: int = 0
    presence: JSON | None = None
    replay: list[tuple[int, str]] = field(default_factory=list)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def owns(self, guild_id: int) -> bool:
        """Whether this shard receives the guild's events (Discord's ``(id >> 22) % shards``)."""
        return (guild_id >> 22) % self.shard_count == self.shard_id

    async def dispatch(self, event: str, data: Any) -> float | None:
        """Send a DISPATCH event; return when it was written (monotonic) or None if buffered only."""
        async with self.send_lock:
            self.seq += 1
            frame = json.dumps({"op": DISPATCH, "t": event, "s": self.seq, "d": data})
            self.replay.append((self.seq, frame))
            del self.replay[:-REPLAY_BUFFER]
            ws = self.ws
            if ws is None or ws.closed:
                return None
            try:
                await ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return None
            return time.monotonic()

    async def send_op(self, op: int, data: Any) -> None:
        async with self.send_lock:
            ws = self.ws
            if ws is not None and not ws.closed:
                await ws.send_str(json.dumps({"op": op, "d": data}))


class Gateway:
    """The websocket endpoint and the registry of sessions."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, GatewaySession] = {}
        self.identify_count = 0
        self.connections: set[web.WebSocketResponse] = set()

    def active(self, guild_id: int | None = None) -> GatewaySession | None:
        """The most recently identified connected session that owns ``guild_id`` (any if None)."""
        candidates = [
            s for s in self.sessions.values() if s.connected and (guild_id is None or s.owns(guild_id))
        ]
        return max(candidates, key=lambda s: s.identified_at, default=None)

    def shard_sessions(self, *, connected: bool = True) -> dict[int, GatewaySession]:
        """The newest session per shard id (only connected ones unless ``connected=False``)."""
        newest: dict[int, GatewaySession] = {}
        for session in self.sessions.values():
            if (session.connected or not connected) and (
                session.shard_id not in newest
                or session.identified_at > newest[session.shard_id].identified_at
            ):
                newest[session.shard_id] = session
        return newest

    async def broadcast(self, event: str, data: JSON, *, guild_id: int | None, intent: int = 0) -> None:
        """Dispatch an event to the newest session of each shard that owns the guild and has the intent.

        A session whose socket is down still gets it (buffered), so a RESUME replays it.
        """
        for session in self.shard_sessions(connected=False).values():
            if guild_id is not None and not session.owns(guild_id):
                continue
            if intent and not session.intents & intent:
                continue
            await session.dispatch(event, data)

    async def close_all(self, code: int = 1001) -> None:
        for ws in list(self.connections):
            await ws.close(code=code)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """GET /gateway: one websocket connection (a fresh IDENTIFY or a RESUME)."""
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections.add(ws)
        session: GatewaySession | None = None
        try:
            await ws.send_str(
                json.dumps({"op": HELLO, "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms}})
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                packet = json.loads(msg.data)
                op, data = packet.get("op"), packet.get("d")
                if op == HEARTBEAT:
                    if session is not None:
                        session.heartbeats += 1
                    await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
                elif op == IDENTIFY:
                    session = await self._identify(ws, data, session)
                elif op == RESUME:
                    session = await self._resume(ws, data)
                elif op == REQUEST_GUILD_MEMBERS and session is not None:
                    await self._members_chunk(session, data)
                elif op == PRESENCE_UPDATE and session is not None:
                    session.presence = data
                else:
                    _log.debug("fake gateway ignores op %s", op)
        finally:
            self.connections.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.fake._changed()
        return ws

    async def _identify(
        self, ws: web.WebSocketResponse, data: JSON, previous: GatewaySession | None
    ) -> GatewaySession | None:
        if previous is not None:
            await ws.close(code=4005, message=b"Already authenticated.")
            return previous
        if data.get("token") != self.fake.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        shard_id, shard_count = data.get("shard") or [0, 1]
        intents = int(data.get("intents") or 0)
        if shard_count != self.fake.shard_count or not 0 <= shard_id < shard_count:
            await ws.close(code=4010, message=b"Invalid shard.")
            return None
        if intents & PRIVILEGED_INTENTS & ~self.fake.privileged_intents:
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return None
        self.identify_count += 1
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            shard_id=shard_id,
            shard_count=shard_count,
            intents=intents,
            identified_at=time.monotonic(),
            ws=ws,
        )
        self.sessions[session.session_id] = session
        guilds = [g for g in self.fake.guilds if session.owns(g.id)]
        await session.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.fake.bot_user.payload(),
                "user_settings": {},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.session_id,
                "session_type": "normal",
                "resume_gateway_url": self.fake.gateway_url,
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.fake.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "auth": {},
                "_trace": ["fake-discord"],
            },
        )
        for guild in guilds:
            await session.dispatch("GUILD_CREATE", self._guild_create(guild))
        self.fake._changed()
        return session

    def _guild_create(self, guild: FakeGuild) -> JSON:
        return guild.payload(joined_at=self.fake.started_at)

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.fake.token or not self.fake.resume_enabled:
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        if session.ws is not None and not session.ws.closed:
            old = session.ws
            session.ws = None
            await old.close(code=4000)
        async with session.send_lock:
            session.ws = ws
            session.resumes += 1
            last = int(data.get("seq") or 0)
            for seq, frame in session.replay:
                if seq > last:
                    await ws.send_str(frame)
        await session.dispatch("RESUMED", {"_trace": ["fake-discord"]})
        self.fake._changed()
        return session

    async def _members_chunk(self, session: GatewaySession, data: JSON) -> None:
        guild = self.fake.guild(int(data["guild_id"]))
        members = guild.members
        if data.get("user_ids"):
            wanted = {int(u) for u in data["user_ids"]}
            members = [m for m in members if m.user.id in wanted]
        elif data.get("query"):
            members = [m for m in members if m.user.username.lower().startswith(str(data["query"]).lower())]
        limit = int(data.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("presences"):
            chunk["presences"] = []
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
