"""``FakeDiscord``: a Discord REST API + gateway on 127.0.0.1 for end-to-end tests.

The real discord.py client (in the test process or in another one) connects to it as it
would to Discord; the test drives it like a user would (slash commands, button clicks,
modal submits, autocomplete) and reads back everything the bot did::

    async with FakeDiscord() as fake:
        configure_endpoints(fake.api_base, fake.gateway_url)   # or fake.bot_env() for a subprocess
        ...start the bot with fake.token...
        await fake.wait_ready(commands=True)
        ping = await fake.slash("ping", {"text": "hi"})
        await fake.wait_for(lambda: ping.followups)
        assert ping.ack_latency < 0.5
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from tests.fake_discord import errors
from tests.fake_discord.gateway import INVALID_SESSION, PRIVILEGED_INTENTS, RECONNECT, Gateway
from tests.fake_discord.models import (
    DM,
    EVERYONE_PERMISSIONS,
    JSON,
    CommandSync,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeUser,
    InjectedFailure,
    InteractionRecord,
    MessageEvent,
    RequestRecord,
    attachment_from_bytes,
    make_guild,
    new_token,
    snowflake,
    utcnow,
)
from tests.fake_discord.oauth import OAuthApi
from tests.fake_discord.options import FakeDiscordError, build_options, modal_answer
from tests.fake_discord.rest import API_PREFIX, RestApi, compile_route
from tests.fake_discord.store import MessageStore

T = TypeVar("T")


UserRef = FakeUser | FakeMember | str | int
ChannelRef = FakeChannel | str | int
AttachmentRef = FakeAttachment | tuple[str, bytes]


class FakeDiscord:
    """A fake Discord (REST v10 + gateway) served on 127.0.0.1 at a free port.

    Args:
        guilds: the guilds the bot is in (default: one :func:`make_guild`).
        token: the bot token the client must present.
        bot_name: the bot user's name.
        shard_count: what GET /gateway/bot recommends; IDENTIFY must use it.
        interaction_token_ttl: seconds an interaction token works for webhooks (Discord: 900).
        ack_deadline: seconds the bot has to call back an interaction (Discord: 3); None disables.
        upload_limit: bytes a message's files may total (Discord, unboosted: 10 MiB).
        expired_token_status: HTTP status for an expired token (Discord answers 401, code 50027).
        heartbeat_interval_ms: what HELLO tells the client.
        privileged_intents: intents the application may use (default: members, presences,
            message content); IDENTIFY with others is closed with 4014.
        revoke_tokens_after_ack: every interaction token stops working right after the
            interaction's first response (as when Discord revokes one), so nothing after the
            acknowledgement can go through the webhook.
        followup_after_deleted_deferral: what a follow-up gets when the "thinking…" deferral
            it would fill was deleted while still loading: ``"new message"`` (a message of its
            own, with its own flags) or ``"unknown message"`` (404, code 10008). Discord has
            answered both ways (discord-api-docs#2739).
    """

    def __init__(
        self,
        guilds: Sequence[FakeGuild] | None = None,
        *,
        token: str = "fake-bot-token",
        bot_name: str = "Imaginarium",
        shard_count: int = 1,
        interaction_token_ttl: float = 900.0,
        ack_deadline: float | None = 3.0,
        upload_limit: int = 10 * 1024 * 1024,
        expired_token_status: int = 401,
        heartbeat_interval_ms: int = 41250,
        privileged_intents: int = PRIVILEGED_INTENTS,
        revoke_tokens_after_ack: bool = False,
        followup_after_deleted_deferral: str = "new message",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.guilds: list[FakeGuild] = list(guilds) if guilds is not None else [make_guild()]
        self.token = token
        self.bot_user = FakeUser(id=snowflake(), username=bot_name, global_name=None, bot=True)
        self.application_id = self.bot_user.id
        self.shard_count = shard_count
        self.interaction_token_ttl = interaction_token_ttl
        self.ack_deadline = ack_deadline
        self.upload_limit = upload_limit
        self.expired_token_status = expired_token_status
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.revoke_tokens_after_ack = revoke_tokens_after_ack
        if followup_after_deleted_deferral not in ("new message", "unknown message"):
            raise ValueError("followup_after_deleted_deferral: 'new message' or 'unknown message'")
        self.followup_after_deleted_deferral = followup_after_deleted_deferral
        self.resume_enabled = True
        self.host = host
        self.port = port
        self.started_at = utcnow()
        for guild in self.guilds:
            guild.add_member(FakeMember(user=self.bot_user))

        # Everything recorded, in arrival order.
        self.store = MessageStore(self)
        self.messages: dict[int, FakeMessage] = self.store.messages
        self.message_events: list[MessageEvent] = self.store.events
        self.interactions: dict[int, InteractionRecord] = {}
        self.requests: list[RequestRecord] = []
        self.unhandled_requests: list[str] = []
        self.internal_errors: list[str] = []
        self.command_syncs: list[CommandSync] = []
        self.commands: dict[int | None, list[JSON]] = {}
        self.attachments: dict[int, FakeAttachment] = self.store.attachments
        self.downloads: list[str] = []
        """Filenames of the attachments fetched from the CDN, in order."""
        self.failures: list[InjectedFailure] = []
        self.dm_channels: dict[int, FakeChannel] = {}

        self._interactions_by_token: dict[str, InteractionRecord] = {}
        self._change = asyncio.Event()
        self.gateway = Gateway(self)
        self.oauth = OAuthApi(self)
        self._rest = RestApi(self)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on ``host``; ``api_base`` and ``gateway_url`` are valid afterwards."""
        self._runner = web.AppRunner(self._rest.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def close(self) -> None:
        """Close every gateway connection and stop serving."""
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What discord.py's ``Route.BASE`` must be (see ``bot.discord_endpoints``)."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The websocket URL (also what GET /gateway/bot and READY's resume_gateway_url say)."""
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def oauth_url(self) -> str:
        """Where a browser is sent to authorize an application (Discord: /oauth2/authorize)."""
        return f"{self.base_url}/oauth2/authorize"

    def oauth_env(self, redirect_uri: str) -> dict[str, str]:
        """Settings that point a web gallery at this fake's OAuth2, with ``redirect_uri``
        registered (as an operator does in the developer portal)."""
        self.oauth.state.redirect_uris.add(redirect_uri)
        return {
            "DISCORD_CLIENT_ID": str(self.application_id),
            "DISCORD_CLIENT_SECRET": self.oauth.state.client_secret,
            "DISCORD_OAUTH_URL": self.oauth_url,
            "DISCORD_API_BASE": self.api_base,
        }

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a bot process (core.settings) at this fake."""
        return {
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": self.token,
        }

    # -- lookups ----------------------------------------------------------------------------

    @property
    def default_guild(self) -> FakeGuild:
        return self.guilds[0]

    def guild(self, key: int | str) -> FakeGuild:
        """A guild by id or name (Discord's 10004 Unknown Guild if none)."""
        for guild in self.guilds:
            if key in (guild.id, str(guild.id), guild.name):
                return guild
        raise errors.unknown_guild()

    def channel(self, key: ChannelRef) -> FakeChannel:
        """A guild or DM channel by object, id or name (Discord's 10003 Unknown Channel if none)."""
        if isinstance(key, FakeChannel):
            return key
        for guild in self.guilds:
            for channel in guild.channels:
                if key in (channel.id, str(channel.id), channel.name):
                    return channel
        for channel in self.dm_channels.values():
            if key in (channel.id, str(channel.id)):
                return channel
        raise errors.unknown_channel()

    def user(self, key: int | str) -> FakeUser:
        """A user (the bot or any guild member) by id or username."""
        if key in (self.bot_user.id, str(self.bot_user.id), self.bot_user.username):
            return self.bot_user
        for guild in self.guilds:
            for member in guild.members:
                if key in (member.user.id, str(member.user.id), member.user.username):
                    return member.user
        raise errors.unknown_user()

    def dm_channel(self, user: FakeUser) -> FakeChannel:
        """The bot's DM channel with ``user`` (made on first use, like POST /users/@me/channels)."""
        if user.id not in self.dm_channels:
            self.dm_channels[user.id] = FakeChannel(
                id=snowflake(), name=user.username, type=DM, recipients=[user]
            )
        return self.dm_channels[user.id]

    def command(self, name: str, *, guild: FakeGuild | int | None = None) -> JSON | None:
        """A synced chat-input command by name: the guild's own first, then the global one."""
        scopes: list[int | None] = []
        if guild is not None:
            scopes.append(guild if isinstance(guild, int) else guild.id)
        scopes.append(None)
        for scope in scopes:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command["type"] == 1:
                    return command
        return None

    def application_payload(self) -> JSON:
        owner = self.default_guild.member(self.default_guild.owner_id).user if self.guilds else self.bot_user
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner.payload(),
            "team": None,
            "flags": 0,
            "bot": self.bot_user.payload(),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
            "approximate_guild_count": len(self.guilds),
        }

    # -- change notification and waiting ----------------------------------------------------

    def _changed(self) -> None:
        """Wake every ``wait_for``: something was recorded."""
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 10.0, what: str | None = None
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value.

        The predicate is re-checked whenever the fake records something (and at least every
        0.25 s, so conditions that depend on time work too).

        Raises:
            TimeoutError: naming ``what`` was awaited.
            FakeDiscordError: a request crashed the fake itself (a bug in the fake).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.internal_errors:
                raise FakeDiscordError("the fake Discord failed:\n" + self.internal_errors[0])
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"fake Discord: timed out after {timeout:.1f}s waiting for {what or predicate}"
                )
            event = self._change
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))

    async def wait_ready(self, timeout: float = 30.0, *, commands: bool = False) -> None:
        """Wait until every shard has a connected, identified session (READY + GUILD_CREATEs sent).

        With ``commands=True`` also wait for at least one application-command sync (the
        fake keeps synced commands across bot restarts, as Discord does).
        """

        def ready() -> bool:
            shards = self.gateway.shard_sessions()
            return len(shards) == self.shard_count and (not commands or bool(self.command_syncs))

        await self.wait_for(ready, timeout, "the bot to connect" + (" and sync commands" if commands else ""))

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        *,
        channel: ChannelRef | None = None,
        timeout: float = 10.0,
    ) -> FakeMessage:
        """The first live message (in ``channel`` if given) that matches ``predicate``."""
        channel_id = self.channel(channel).id if channel is not None else None

        def find() -> FakeMessage | None:
            for message in self.messages.values():
                if message.deleted or (channel_id is not None and message.channel_id != channel_id):
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout, "a matching message")

    # -- failure injection and token expiry --------------------------------------------------------

    def fail_next(
        self,
        route: str,
        count: int = 1,
        *,
        status: int = 429,
        retry_after: float = 0.2,
        is_global: bool = False,
    ) -> InjectedFailure:
        """Answer the next ``count`` requests on ``route`` with ``status`` (429 or 5xx).

        ``route`` is ``"METHOD /path"`` (method optional) with ids literal or as
        ``{placeholders}``, as in discord.py: ``"POST /channels/{channel_id}/messages"``,
        ``"PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"``. A 429 carries
        ``retry_after`` in its JSON and headers (and ``global`` if ``is_global``).
        """
        method, pattern = compile_route(route)
        failure = InjectedFailure(
            method=method,
            pattern=pattern,
            status=status,
            remaining=count,
            retry_after=retry_after,
            is_global=is_global,
        )
        self.failures.append(failure)
        return failure

    def _take_failure(self, method: str, path: str) -> InjectedFailure | None:
        for failure in self.failures:
            if failure.remaining > 0 and failure.method in (None, method) and failure.pattern.match(path):
                failure.remaining -= 1
                return failure
        return None

    def expire(self, interaction: InteractionRecord) -> None:
        """Make the interaction's token invalid now, as if 15 minutes had passed."""
        interaction.expired = True
        self._changed()

    def _token_expired(self, record: InteractionRecord) -> bool:
        return record.expired or time.monotonic() - record.created_at > self.interaction_token_ttl

    # -- gateway control -------------------------------------------------------------------

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection with ``code`` (4000: the client RESUMEs)."""
        await self.gateway.close_all(code=code)

    async def invalidate_sessions(self) -> None:
        """Send INVALID_SESSION (not resumable): the client must IDENTIFY again from scratch."""
        sessions = list(self.gateway.sessions.values())
        self.gateway.sessions.clear()
        for session in sessions:
            await session.send_op(INVALID_SESSION, False)

    async def request_reconnect(self) -> None:
        """Send RECONNECT: the client closes and RESUMEs."""
        for session in list(self.gateway.sessions.values()):
            await session.send_op(RECONNECT, None)

    # -- driving the bot like a user --------------------------------------------------------

    def attachment(self, filename: str, data: bytes, *, description: str | None = None) -> FakeAttachment:
        """A file a user uploads (for an attachment option), served back at ``.url``."""
        attachment = attachment_from_bytes(filename, data, description=description)
        self.store.serve(attachment, channel_id=0)
        return attachment

    async def slash(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: UserRef | None = None,
        channel: ChannelRef | None = None,
        attachments: Mapping[str, AttachmentRef] | None = None,
        timeout: float = 10.0,
    ) -> InteractionRecord:
        """Invoke a synced slash command; ``name`` may include subcommands (``"settings show"``).

        Option values are checked against the synced definition (required options,
        choices, lengths, ranges) and encoded by its types: users, channels, roles and
        attachments may be given as objects, names or ids and are put in ``resolved``.
        ``attachments`` maps attachment options to a FakeAttachment or ``(filename, bytes)``.
        Returns as soon as INTERACTION_CREATE is written; the record fills in as the bot answers.
        """
        return await self._command_interaction(2, name, options, None, user, channel, attachments, timeout)

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        focused: str,
        *,
        user: UserRef | None = None,
        channel: ChannelRef | None = None,
        timeout: float = 10.0,
    ) -> InteractionRecord:
        """Send an autocomplete request while the user types ``options[focused]``."""
        return await self._command_interaction(4, name, options, focused, user, channel, None, timeout)

    async def click(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        user: UserRef | None = None,
        timeout: float = 10.0,
    ) -> InteractionRecord:
        """Click the button ``custom_id`` on the message as it is now."""
        msg = self._live_message(message)
        component = msg.component(custom_id)
        if component.type != 2:
            raise FakeDiscordError(f"{custom_id!r} is not a button (type {component.type}); use select()")
        if component.disabled:
            raise FakeDiscordError(f"button {custom_id!r} is disabled")
        if component.style in (5, 6):
            raise FakeDiscordError(
                f"button {custom_id!r} is a link/premium button: clicking it sends no interaction"
            )
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._component_interaction(msg, custom_id, data, user, timeout)

    async def select(
        self,
        message: FakeMessage | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user: UserRef | None = None,
        timeout: float = 10.0,
    ) -> InteractionRecord:
        """Choose ``values`` in the select menu ``custom_id`` on the message."""
        msg = self._live_message(message)
        component = msg.component(custom_id)
        if component.type not in (3, 5, 6, 7, 8):
            raise FakeDiscordError(f"{custom_id!r} is not a select menu (type {component.type})")
        if component.disabled:
            raise FakeDiscordError(f"select {custom_id!r} is disabled")
        raw = component.raw
        if not raw.get("min_values", 1) <= len(values) <= raw.get("max_values", 1):
            raise FakeDiscordError(
                f"select {custom_id!r} takes {raw.get('min_values', 1)}..{raw.get('max_values', 1)} values"
            )
        if component.type == 3:
            allowed = {o["value"] for o in component.options}
            if not set(values) <= allowed:
                raise FakeDiscordError(
                    f"select {custom_id!r} has no option(s) {sorted(set(values) - allowed)}"
                )
        data = {"custom_id": custom_id, "component_type": component.type, "values": [str(v) for v in values]}
        return await self._component_interaction(msg, custom_id, data, user, timeout)

    async def submit_modal(
        self,
        interaction: InteractionRecord,
        values: Mapping[str, str | Sequence[str]],
        *,
        user: UserRef | None = None,
        timeout: float = 10.0,
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot opened in answer to ``interaction``.

        ``values`` maps the modal's text inputs (and selects) by custom_id; inputs left out
        keep their default value. Required inputs must be filled.
        """
        modal = interaction.modal
        if modal is None:
            raise FakeDiscordError(f"the bot did not open a modal for {interaction.name!r}")
        known: set[str] = set()
        components = [modal_answer(c, values, known) for c in modal.get("components", [])]
        unknown = set(values) - known
        if unknown:
            raise FakeDiscordError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}")
        data = {"custom_id": modal["custom_id"], "components": [c for c in components if c is not None]}
        channel = self.channel(interaction.channel_id)
        guild = self.guild(interaction.guild_id) if interaction.guild_id is not None else None
        member = self._member(guild, user if user is not None else interaction.user)
        message = self.messages.get(interaction.message_id) if interaction.message_id is not None else None
        return await self._send_interaction(
            5, modal["custom_id"], data, guild, channel, member, message, timeout
        )

    async def post_user_message(
        self,
        channel: ChannelRef,
        content: str,
        *,
        user: UserRef | None = None,
        attachments: Sequence[AttachmentRef] = (),
    ) -> FakeMessage:
        """A user posts a message in a channel (MESSAGE_CREATE to bots with the intent)."""
        chan = self.channel(channel)
        guild = self.guild(chan.guild_id) if chan.guild_id is not None else None
        member = self._member(guild, user)
        message = FakeMessage(
            id=snowflake(),
            channel_id=chan.id,
            guild_id=chan.guild_id,
            author=member.user,
            content=content,
            attachments=[self._user_attachment(a) for a in attachments],
        )
        self.messages[message.id] = message
        self.store.record_event("create", message, via="user", interaction=None)
        payload = message.payload(self)
        if guild is not None:
            payload["member"] = member.payload(with_user=False)
        await self.store.broadcast("MESSAGE_CREATE", message, payload)
        return message

    # -- interaction plumbing ---------------------------------------------------------------------

    async def _command_interaction(
        self,
        kind: int,
        name: str,
        options: Mapping[str, Any] | None,
        focused: str | None,
        user: UserRef | None,
        channel: ChannelRef | None,
        attachments: Mapping[str, AttachmentRef] | None,
        timeout: float,
    ) -> InteractionRecord:
        chan = self.channel(channel) if channel is not None else self._default_channel()
        guild = self.guild(chan.guild_id) if chan.guild_id is not None else None
        member = self._member(guild, user)
        path = name.split()
        command = self.command(path[0], guild=guild)
        if command is None:
            synced = sorted(c["name"] for cs in self.commands.values() for c in cs)
            raise FakeDiscordError(f"/{path[0]} is not a synced command (synced: {synced})")
        given = dict(options or {})
        given.update(attachments or {})
        resolved: dict[str, dict[str, JSON]] = {}
        schema = command.get("options") or []
        nested: list[tuple[str, int]] = []
        for word in path[1:]:
            sub = next((o for o in schema if o["name"] == word and o["type"] in (1, 2)), None)
            if sub is None:
                raise FakeDiscordError(f"/{name}: {word!r} is not a subcommand")
            nested.append((word, sub["type"]))
            schema = sub.get("options") or []
        leaf = build_options(self, schema, given, guild, resolved, focused=focused, where=f"/{name}")
        for word, sub_type in reversed(nested):
            leaf = [{"name": word, "type": sub_type, "options": leaf}]
        data: JSON = {"id": command["id"], "name": command["name"], "type": 1, "options": leaf}
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return await self._send_interaction(kind, name, data, guild, chan, member, None, timeout)

    def _user_attachment(self, value: AttachmentRef) -> FakeAttachment:
        if isinstance(value, FakeAttachment):
            if value.id not in self.attachments:
                self.store.serve(value, channel_id=0)
            return value
        filename, data = value
        return self.attachment(filename, data)

    async def _component_interaction(
        self, msg: FakeMessage, custom_id: str, data: JSON, user: UserRef | None, timeout: float
    ) -> InteractionRecord:
        channel = self.channel(msg.channel_id)
        guild = self.guild(msg.guild_id) if msg.guild_id is not None else None
        owner = self.interactions.get(msg.interaction_id) if msg.interaction_id is not None else None
        if user is None and owner is not None:
            user = owner.user
        member = self._member(guild, user)
        if msg.ephemeral and owner is not None and member.user.id != owner.user.id:
            raise FakeDiscordError(
                "only the user who ran the command can see (and click) an ephemeral message"
            )
        return await self._send_interaction(3, custom_id, data, guild, channel, member, msg, timeout)

    async def _send_interaction(
        self,
        kind: int,
        name: str,
        data: JSON,
        guild: FakeGuild | None,
        channel: FakeChannel,
        member: FakeMember,
        message: FakeMessage | None,
        timeout: float,
    ) -> InteractionRecord:
        session = await self.wait_for(
            lambda: self.gateway.active(guild.id if guild is not None else None),
            timeout,
            "a connected gateway session",
        )
        interaction_id = snowflake()
        token = new_token()
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.upload_limit,
        }
        if guild is not None:
            bot_member = guild.member(self.bot_user.id)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                member=member.payload(permissions=guild.permissions_of(member)),
                app_permissions=str(guild.permissions_of(bot_member)),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=member.user.payload(),
                app_permissions=str(EVERYONE_PERMISSIONS),
                authorizing_integration_owners={"1": str(member.user.id)},
                context=1,
            )
        if message is not None:
            payload["message"] = message.payload(self)
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            name=name,
            payload=payload,
            guild_id=guild.id if guild is not None else None,
            channel_id=channel.id,
            user=member.user,
            created_at=time.monotonic(),
            message_id=message.id if message is not None else None,
            _fake=self,
        )
        self.interactions[interaction_id] = record
        self._interactions_by_token[token] = record
        # Stamp before writing: an in-process bot may answer before dispatch() returns.
        record.sent_at = time.monotonic()
        if await session.dispatch("INTERACTION_CREATE", payload) is None:
            raise FakeDiscordError("the gateway connection closed while sending INTERACTION_CREATE")
        self._changed()
        return record

    def _default_channel(self) -> FakeChannel:
        return next(
            (c for c in self.default_guild.channels if c.type == 0 and not c.nsfw),
            self.default_guild.channels[0],
        )

    def _member(self, guild: FakeGuild | None, user: UserRef | None) -> FakeMember:
        if isinstance(user, FakeMember):
            return user
        if guild is None:
            if user is None:
                raise FakeDiscordError("name the user for an interaction outside a guild")
            found = user if isinstance(user, FakeUser) else self.user(user)
            return FakeMember(user=found)
        if user is None:
            return next(m for m in guild.members if not m.user.bot)
        try:
            return guild.member(user.id if isinstance(user, FakeUser) else user)
        except KeyError:
            raise FakeDiscordError(f"{user!r} is not a member of {guild.name!r}") from None

    def _live_message(self, message: FakeMessage | int) -> FakeMessage:
        msg = self.messages.get(message.id if isinstance(message, FakeMessage) else message)
        if msg is None or msg.deleted:
            raise FakeDiscordError(f"message {message!r} does not exist (or was deleted)")
        return msg

    # -- command registry (used by the REST handlers) -----------------------------------------

    def _set_commands(self, method: str, scope: int | None, commands: list[JSON]) -> None:
        self.commands[scope] = commands
        self.command_syncs.append(
            CommandSync(method=method, guild_id=scope, commands=tuple(commands), at=time.monotonic())
        )
