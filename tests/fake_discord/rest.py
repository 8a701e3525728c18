"""The fake REST API (v10): the routes discord.py calls, answered the way Discord answers them.

Route paths are written exactly as discord.py's ``Route`` spells them (``{channel_id}``,
``{webhook_id}``, ``{webhook_token}``, ...), so a test can name a route in
``FakeDiscord.fail_next`` by copying it from discord.py's ``http.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import traceback
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.fake_discord import errors
from tests.fake_discord.errors import DiscordError
from tests.fake_discord.models import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    JSON,
    FakeAttachment,
    FakeChannel,
    FakeMessage,
    InjectedFailure,
    InteractionRecord,
    InteractionResponse,
    RequestRecord,
    attachment_from_bytes,
    snowflake,
)

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

API_PREFIX = "/api/v10"
_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")


def compile_route(route: str) -> tuple[str | None, re.Pattern[str]]:
    """``"POST /channels/{channel_id}/messages"`` (method optional, ids literal or {named}) -> matcher."""
    route = route.strip()
    method: str | None = None
    if " " in route:
        method, route = route.split(None, 1)
        method = method.upper()
    route = route.split("?", 1)[0].removeprefix(API_PREFIX)
    parts = [
        "[^/]+" if seg.startswith("{") and seg.endswith("}") else re.escape(seg) for seg in route.split("/")
    ]
    return method, re.compile("^" + "/".join(parts) + "/?$")


class RestApi:
    """aiohttp handlers over a :class:`~tests.fake_discord.server.FakeDiscord`'s state."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    # -- application ---------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=1024**3)
        r = app.router
        p = API_PREFIX
        self.fake.oauth.routes(app, p)
        r.add_get(f"{p}/gateway", self.get_gateway)
        r.add_get(f"{p}/gateway/bot", self.get_gateway_bot)
        r.add_get(f"{p}/users/@me", self.get_me)
        r.add_post(f"{p}/users/@me/channels", self.create_dm)
        r.add_get(f"{p}/users/{{user_id}}", self.get_user)
        r.add_get(f"{p}/oauth2/applications/@me", self.get_application)
        r.add_get(f"{p}/applications/@me", self.get_application)
        for base in (
            f"{p}/applications/{{application_id}}/commands",
            f"{p}/applications/{{application_id}}/guilds/{{guild_id}}/commands",
        ):
            r.add_get(base, self.list_commands)
            r.add_put(base, self.overwrite_commands)
            r.add_post(base, self.upsert_command)
            if "guilds" in base:
                r.add_get(f"{base}/permissions", self.command_permissions)
            r.add_get(f"{base}/{{command_id}}", self.get_command)
            r.add_patch(f"{base}/{{command_id}}", self.edit_command)
            r.add_delete(f"{base}/{{command_id}}", self.delete_command)
        r.add_post(f"{p}/interactions/{{webhook_id}}/{{webhook_token}}/callback", self.interaction_callback)
        r.add_post(f"{p}/webhooks/{{webhook_id}}/{{webhook_token}}", self.create_followup)
        msg = f"{p}/webhooks/{{webhook_id}}/{{webhook_token}}/messages/{{message_id}}"
        r.add_get(msg, self.get_webhook_message)
        r.add_patch(msg, self.edit_webhook_message)
        r.add_delete(msg, self.delete_webhook_message)
        r.add_get(f"{p}/channels/{{channel_id}}", self.get_channel)
        r.add_post(f"{p}/channels/{{channel_id}}/typing", self.typing)
        r.add_get(f"{p}/channels/{{channel_id}}/messages", self.list_messages)
        r.add_post(f"{p}/channels/{{channel_id}}/messages", self.create_message)
        one = f"{p}/channels/{{channel_id}}/messages/{{message_id}}"
        r.add_get(one, self.get_message)
        r.add_patch(one, self.edit_message)
        r.add_delete(one, self.delete_message)
        r.add_put(f"{one}/reactions/{{emoji}}/@me", self.add_reaction)
        r.add_delete(f"{one}/reactions/{{emoji}}/{{member_id}}", self.remove_reaction)
        r.add_get(f"{one}/reactions/{{emoji}}", self.list_reactions)
        r.add_get(f"{p}/guilds/{{guild_id}}", self.get_guild)
        r.add_get(f"{p}/guilds/{{guild_id}}/channels", self.get_guild_channels)
        r.add_get(f"{p}/guilds/{{guild_id}}/roles", self.get_guild_roles)
        r.add_get(f"{p}/guilds/{{guild_id}}/members", self.list_members)
        r.add_get(f"{p}/guilds/{{guild_id}}/members/{{user_id}}", self.get_member)
        r.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self.download_attachment)
        r.add_get("/gateway", self.fake.gateway.handle)
        r.add_get("/gateway/", self.fake.gateway.handle)
        return app

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Inject failures, check the bot token, turn DiscordError into JSON, log every request."""
        at = time.monotonic()
        is_api = request.path.startswith(API_PREFIX)
        sub = request.path.removeprefix(API_PREFIX) if is_api else request.path
        resource = request.match_info.route.resource
        template = resource.canonical.removeprefix(API_PREFIX) if resource is not None else sub
        route = f"{request.method} {template}"
        failure = self.fake._take_failure(request.method, sub)
        if failure is not None:
            response = _failure_response(failure, route)
            self._record(request, sub, route, response.status, at, None, injected=True)
            return response
        if sub.startswith("/gateway") and not is_api:
            return await handler(request)
        code: int | None = None
        try:
            bearer = sub == "/users/@me" and request.headers.get("Authorization", "").startswith("Bearer ")
            if (
                is_api
                and not bearer
                and self._needs_bot_token(sub)
                and request.headers.get("Authorization") != f"Bot {self.fake.token}"
            ):
                raise errors.unauthorized()
            response = await handler(request)
        except DiscordError as exc:
            code = exc.code
            response = json_response(exc.body(), status=exc.status)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                raise
            self.fake.unhandled_requests.append(f"{request.method} {request.path_qs}")
            code = 0
            response = json_response({"message": "404: Not Found", "code": 0}, status=404)
        except Exception:
            # A bug in the fake itself: keep it for wait_for() to raise, and answer 400 (not
            # 5xx, which discord.py would retry for seconds before the test saw anything).
            self.fake.internal_errors.append(f"{request.method} {request.path}\n{traceback.format_exc()}")
            code = 0
            response = json_response({"message": "fake Discord internal error", "code": 0}, status=400)
        if is_api:
            self._record(request, sub, route, response.status, at, code)
        self.fake._changed()
        return response

    @staticmethod
    def _needs_bot_token(sub: str) -> bool:
        # Interaction callbacks and webhook calls authenticate with the token in the URL; the
        # OAuth2 token exchange with the application's client id and secret.
        return not sub.startswith(("/webhooks/", "/interactions/", "/oauth2/token"))

    def _record(
        self,
        request: web.Request,
        sub: str,
        route: str,
        status: int,
        at: float,
        code: int | None,
        *,
        injected: bool = False,
    ) -> None:
        self.fake.requests.append(
            RequestRecord(
                method=request.method,
                path=sub,
                route=route,
                status=status,
                at=at,
                error_code=code,
                injected=injected,
            )
        )

    # -- bodies --------------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> tuple[Any, dict[int, FakeAttachment]]:
        """A JSON body, or multipart with ``payload_json`` and ``files[n]`` parts."""
        if not request.can_read_body:
            return {}, {}
        if not request.content_type.startswith("multipart/"):
            text = await request.text()
            return (json.loads(text) if text else {}), {}
        payload: JSON = {}
        files: dict[int, FakeAttachment] = {}
        reader = await request.multipart()
        position = 0
        async for part in reader:
            if not isinstance(part, BodyPartReader):  # nested multipart: not used by Discord
                continue
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif part.filename is not None:
                match = re.search(r"(\d+)", part.name or "")
                index = int(match.group(1)) if match else position
                files[index] = attachment_from_bytes(part.filename, bytes(await part.read()))
                position += 1
        return payload, files

    def _check_upload(self, files: dict[int, FakeAttachment]) -> None:
        if len(files) > 10:
            raise errors.invalid_form("files", "Must be 10 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
        if sum(f.size for f in files.values()) > self.fake.upload_limit:
            raise errors.too_large()

    # -- gateway, users, application -----------------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.fake.gateway_url,
                "shards": self.fake.shard_count,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": max(0, 1000 - self.fake.gateway.identify_count),
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_me(self, request: web.Request) -> web.Response:
        member = self.fake.oauth.bearer_user(request)
        if member is not None:
            return json_response(self.fake.user(member).payload())
        return json_response(self.fake.bot_user.payload())

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(self.fake.user(int(request.match_info["user_id"])).payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        body, _ = await self._read_body(request)
        user = self.fake.user(int(body["recipient_id"]))
        return json_response(self.fake.dm_channel(user).payload())

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(self.fake.application_payload())

    # -- application commands ------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if int(request.match_info["application_id"]) != self.fake.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        guild_id = request.match_info.get("guild_id")
        if guild_id is None:
            return None
        self.fake.guild(int(guild_id))
        return int(guild_id)

    def _normalise_command(
        self, body: JSON, guild_id: int | None, existing: list[JSON], path: str = ""
    ) -> JSON:
        errs = errors.FormErrors()
        kind = int(body.get("type", 1))
        name = str(body.get("name", ""))
        if not _COMMAND_NAME.match(name) or (kind == 1 and name != name.lower()):
            errs.add(f"{path}name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = body.get("description") or ""
        if kind == 1 and not 1 <= len(description) <= 100:
            errs.add(f"{path}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        options = body.get("options") or []
        errs.max_length(f"{path}options", options, 25)
        errs.raise_if_any()
        previous = next((c for c in existing if c["name"] == name and c["type"] == kind), None)
        command: JSON = {
            "id": previous["id"] if previous else str(snowflake()),
            "application_id": str(self.fake.application_id),
            "version": str(snowflake()),
            "type": kind,
            "name": name,
            "name_localizations": body.get("name_localizations"),
            "description": description,
            "description_localizations": body.get("description_localizations"),
            "options": options,
            "default_member_permissions": body.get("default_member_permissions"),
            "dm_permission": body.get("dm_permission", True),
            "nsfw": body.get("nsfw", False),
            "contexts": body.get("contexts"),
            "integration_types": body.get("integration_types") or [0],
        }
        if guild_id is not None:
            command["guild_id"] = str(guild_id)
        return command

    async def list_commands(self, request: web.Request) -> web.Response:
        return json_response(self.fake.commands.get(self._command_scope(request), []))

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body, _ = await self._read_body(request)
        existing = self.fake.commands.get(scope, [])
        commands = [self._normalise_command(c, scope, existing, f"{i}.") for i, c in enumerate(body)]
        names = [(c["name"], c["type"]) for c in commands]
        if len(set(names)) != len(names):
            raise errors.invalid_form(
                "_errors", "Application command names must be unique", "APPLICATION_COMMANDS_DUPLICATE_NAME"
            )
        self.fake._set_commands("PUT", scope, commands)
        return json_response(commands)

    async def upsert_command(self, request: web.Request) -> web.Response:
        scope = self._command_scope(request)
        body, _ = await self._read_body(request)
        existing = list(self.fake.commands.get(scope, []))
        command = self._normalise_command(body, scope, existing)
        replaced = [c for c in existing if c["id"] != command["id"]]
        self.fake._set_commands("POST", scope, [*replaced, command])
        return json_response(command, status=200 if len(replaced) < len(existing) else 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, JSON]:
        scope = self._command_scope(request)
        wanted = request.match_info["command_id"]
        for command in self.fake.commands.get(scope, []):
            if command["id"] == wanted:
                return scope, command
        raise errors.unknown_command()

    async def get_command(self, request: web.Request) -> web.Response:
        return json_response(self._find_command(request)[1])

    async def edit_command(self, request: web.Request) -> web.Response:
        scope, command = self._find_command(request)
        body, _ = await self._read_body(request)
        existing = self.fake.commands.get(scope, [])
        updated = self._normalise_command({**command, **body}, scope, [command])
        updated["id"] = command["id"]
        self.fake._set_commands(
            "PATCH", scope, [updated if c["id"] == command["id"] else c for c in existing]
        )
        return json_response(updated)

    async def delete_command(self, request: web.Request) -> web.Response:
        scope, command = self._find_command(request)
        existing = self.fake.commands.get(scope, [])
        self.fake._set_commands("DELETE", scope, [c for c in existing if c["id"] != command["id"]])
        return web.Response(status=204)

    async def command_permissions(self, request: web.Request) -> web.Response:
        self._command_scope(request)
        return json_response([])

    # -- interactions --------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.StreamResponse:
        """POST /interactions/{id}/{token}/callback: the one acknowledgement of an interaction."""
        now = time.monotonic()
        fake = self.fake
        record = fake.interactions.get(_int(request.match_info["webhook_id"]))
        if record is None or record.token != request.match_info["webhook_token"]:
            raise errors.unknown_interaction()
        if record.responses:
            raise errors.already_acknowledged()
        sent = record.sent_at if record.sent_at is not None else record.created_at
        if fake.ack_deadline is not None and now - sent > fake.ack_deadline:
            # Discord forgets an interaction that was not acknowledged within 3 seconds.
            record.expired = True
            raise errors.unknown_interaction()
        body, files = await self._read_body(request)
        kind = int(body.get("type", 0))
        data: JSON = body.get("data") or {}
        self._check_response_type(record, kind)
        message: FakeMessage | None = None
        if kind == 4:
            errors.check_message(data, prefix="data.")
            self._check_upload(files)
            message = await fake.store.new_interaction_message(
                record, data, files, via="interaction_callback"
            )
            record.original_message_id = message.id
        elif kind == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = await fake.store.new_interaction_message(
                record, {"flags": flags}, {}, via="interaction_callback", loading=True
            )
            record.original_message_id = message.id
        elif kind == 6:
            record.original_message_id = record.message_id
        elif kind == 7:
            errors.check_message(data, prefix="data.")
            self._check_upload(files)
            assert record.message_id is not None
            message = await fake.store.edit(
                fake.messages[record.message_id], data, files, via="interaction_callback", interaction=record
            )
            record.original_message_id = message.id
        elif kind == 8:
            errors.check_choices(data)
        elif kind == 9:
            errors.check_modal(data)
        record.responses.append(
            InteractionResponse(
                type=kind, data=data, received_at=now, latency=now - sent, files=list(files.values())
            )
        )
        if fake.revoke_tokens_after_ack and kind not in (8, 9):
            record.expired = True
        fake._changed()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        original = record.original
        interaction: JSON = {
            "id": str(record.id),
            "type": record.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(original and original.ephemeral),
        }
        if original is not None and kind in (4, 5, 6, 7):
            interaction["response_message_id"] = str(original.id)
        resource: JSON = {"type": kind}
        if message is not None:
            resource["message"] = message.payload(fake)
        return json_response({"interaction": interaction, "resource": resource})

    @staticmethod
    def _check_response_type(record: InteractionRecord, kind: int) -> None:
        allowed = {
            2: {4, 5, 9},
            3: {4, 5, 6, 7, 9},
            4: {8},
            5: {4, 5, 6, 7} if record.message_id is not None else {4, 5},
        }.get(record.type, set())
        if kind not in allowed:
            raise errors.invalid_form(
                "type",
                f"Interaction response type {kind} is not valid for a {record.type_name} interaction",
                "INTERACTION_RESPONSE_TYPE_INVALID",
            )

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        fake = self.fake
        if _int(request.match_info["webhook_id"]) != fake.application_id:
            raise errors.unknown_webhook()
        record = fake._interactions_by_token.get(request.match_info["webhook_token"])
        if record is None or fake._token_expired(record):
            raise errors.invalid_webhook_token(fake.expired_token_status)
        if not record.responses:
            raise errors.unknown_webhook()
        return record

    def _webhook_message(self, request: web.Request, record: InteractionRecord) -> FakeMessage:
        key = request.match_info["message_id"]
        if key == "@original":
            message_id = record.original_message_id
        else:
            message_id = _int(key)
            if message_id != record.original_message_id and message_id not in record.followup_ids:
                message_id = None
        message = self.fake.messages.get(message_id) if message_id is not None else None
        if message is None or message.deleted:
            raise errors.unknown_message()
        return message

    async def create_followup(self, request: web.Request) -> web.Response:
        """POST /webhooks/{app_id}/{token}: a follow-up (the first one after a defer fills the placeholder)."""
        fake = self.fake
        record = self._webhook_interaction(request)
        body, files = await self._read_body(request)
        errors.check_message(body)
        self._check_upload(files)
        original = record.original
        deferred = record.response is not None and record.response.type == 5
        if (
            deferred
            and original is not None
            and original.loading
            and original.deleted
            and not record.followup_ids
            and fake.followup_after_deleted_deferral == "unknown message"
        ):
            raise errors.unknown_message()
        if (
            deferred
            and original is not None
            and original.loading
            and not original.deleted
            and not record.followup_ids
        ):
            # Discord turns the first follow-up after a "thinking" defer into the response
            # itself; its ephemerality is the defer's, whatever the follow-up asks for. Once
            # the placeholder is deleted, a follow-up is a new message with its own flags.
            payload = {k: v for k, v in body.items() if k != "flags"}
            message = await fake.store.edit(
                original, payload, files, via="webhook", interaction=record, clear_loading=True
            )
        else:
            message = await fake.store.new_interaction_message(record, body, files, via="webhook")
        record.followup_ids.append(message.id)
        return json_response(message.payload(fake))

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        return json_response(self._webhook_message(request, record).payload(self.fake))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        message = self._webhook_message(request, record)
        body, files = await self._read_body(request)
        errors.check_message(body)
        self._check_upload(files)
        message = await self.fake.store.edit(
            message, body, files, via="webhook", interaction=record, clear_loading=True
        )
        return json_response(message.payload(self.fake))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        record = self._webhook_interaction(request)
        await self.fake.store.delete(
            self._webhook_message(request, record), via="webhook", interaction=record
        )
        return web.Response(status=204)

    # -- channels and messages -----------------------------------------------------------

    def _channel(self, request: web.Request) -> FakeChannel:
        return self.fake.channel(_int(request.match_info["channel_id"]))

    def _channel_message(self, request: web.Request) -> FakeMessage:
        channel = self._channel(request)
        message = self.fake.messages.get(_int(request.match_info["message_id"]))
        # Ephemeral messages exist only for their interaction: channel routes cannot see them.
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise errors.unknown_message()
        return message

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request).payload())

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        limit = min(100, int(request.query.get("limit", 50)))
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        found = [
            m
            for m in self.fake.messages.values()
            if m.channel_id == channel.id
            and not m.deleted
            and not m.ephemeral
            and (before is None or m.id < before)
            and (after is None or m.id > after)
        ]
        found.sort(key=lambda m: m.id, reverse=after is None)
        return json_response([m.payload(self.fake) for m in found[:limit]])

    async def create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        body, files = await self._read_body(request)
        errors.check_message(body)
        self._check_upload(files)
        reference = body.get("message_reference")
        if reference:
            target = self.fake.messages.get(_int(reference.get("message_id")))
            if (target is None or target.deleted) and reference.get("fail_if_not_exists", True):
                raise errors.invalid_form(
                    "message_reference", "Unknown message", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
                )
        message = await self.fake.store.create(channel, body, files, via="channel")
        return json_response(message.payload(self.fake))

    async def get_message(self, request: web.Request) -> web.Response:
        return json_response(self._channel_message(request).payload(self.fake))

    async def edit_message(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        if message.author.id != self.fake.bot_user.id:
            raise errors.cannot_edit_others()
        body, files = await self._read_body(request)
        errors.check_message(body)
        self._check_upload(files)
        message = await self.fake.store.edit(message, body, files, via="channel")
        return json_response(message.payload(self.fake))

    async def delete_message(self, request: web.Request) -> web.Response:
        await self.fake.store.delete(self._channel_message(request), via="channel")
        return web.Response(status=204)

    async def add_reaction(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        emoji = request.match_info["emoji"]
        if not emoji:
            raise errors.unknown_emoji()
        message.reactions.setdefault(emoji, set()).add(self.fake.bot_user.id)
        self.fake.store.record_event("edit", message, via="channel", interaction=None)
        return web.Response(status=204)

    async def remove_reaction(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        member = request.match_info["member_id"]
        user_id = self.fake.bot_user.id if member == "@me" else _int(member)
        message.reactions.get(request.match_info["emoji"], set()).discard(user_id)
        self.fake.store.record_event("edit", message, via="channel", interaction=None)
        return web.Response(status=204)

    async def list_reactions(self, request: web.Request) -> web.Response:
        message = self._channel_message(request)
        users = message.reactions.get(request.match_info["emoji"], set())
        return json_response([self.fake.user(u).payload() for u in sorted(users)])

    async def download_attachment(self, request: web.Request) -> web.Response:
        attachment = self.fake.attachments.get(_int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.fake.downloads.append(attachment.filename)
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )

    # -- guilds --------------------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self.fake.guild(_int(request.match_info["guild_id"]))
        data = guild.payload(joined_at=self.fake.started_at)
        for key in (
            "channels",
            "members",
            "threads",
            "presences",
            "voice_states",
            "joined_at",
            "large",
            "member_count",
        ):
            data.pop(key, None)
        if request.query.get("with_counts", "").lower() in ("1", "true"):
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self.fake.guild(_int(request.match_info["guild_id"]))
        return json_response([c.payload() for c in guild.channels])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        guild = self.fake.guild(_int(request.match_info["guild_id"]))
        return json_response([r.payload() for r in guild.roles])

    async def list_members(self, request: web.Request) -> web.Response:
        guild = self.fake.guild(_int(request.match_info["guild_id"]))
        limit = min(1000, int(request.query.get("limit", 1)))
        after = int(request.query.get("after", 0))
        members = sorted((m for m in guild.members if m.user.id > after), key=lambda m: m.user.id)
        return json_response([m.payload() for m in members[:limit]])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.fake.guild(_int(request.match_info["guild_id"]))
        user_id = _int(request.match_info["user_id"])
        for member in guild.members:
            if member.user.id == user_id:
                return json_response(member.payload())
        raise errors.unknown_member()


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer whose Content-Type is exactly ``application/json``.

    discord.py only decodes a body whose header equals that string (``json_or_text``);
    aiohttp's own ``json_response`` appends ``; charset=utf-8`` and the client would see text.
    """
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _int(value: Any) -> int:
    """A snowflake from a URL segment; junk becomes 0, which matches nothing (Discord answers 404)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _failure_response(failure: InjectedFailure, route: str) -> web.Response:
    if failure.status != 429:
        reason = {
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        text = reason.get(failure.status, "Server Error")
        return json_response({"message": f"{failure.status}: {text}", "code": 0}, status=failure.status)
    retry_after = failure.retry_after
    body: JSON = {
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": failure.is_global,
    }
    # discord.py treats a 429 without a Via header as a Cloudflare ban and gives up, so the
    # header Discord's real edge adds is part of the contract.
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": "global" if failure.is_global else "user",
    }
    if failure.is_global:
        headers["X-RateLimit-Global"] = "true"
        body["code"] = 0
    else:
        headers.update(
            {
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": hashlib.sha1(route.encode()).hexdigest()[:16],
            }
        )
    return json_response(body, status=429, headers=headers)
