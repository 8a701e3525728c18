"""The fake's message store: every message the bot (or a test user) made, edited or deleted.

The REST handlers call it for channel messages, interaction responses and webhook
follow-ups alike, so that one set of rules (flags, attachments kept or replaced on edit,
empty messages refused, events recorded, MESSAGE_* dispatched) applies to all of them.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import TYPE_CHECKING

from tests.fake_discord import errors
from tests.fake_discord.models import (
    FLAG_COMPONENTS_V2,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    JSON,
    FakeAttachment,
    FakeChannel,
    FakeMessage,
    InteractionRecord,
    MessageEvent,
    snowflake,
    utcnow,
)

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
# Flags a bot may set when it creates a message; Discord drops the others.
CREATE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
# Flags a bot may change on edit; ephemeral and loading are fixed by how the message was made.
EDIT_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2


_USER_MENTION = re.compile(r"<@!?([0-9]{15,21})>")
_EVERYONE = re.compile(r"@(?:everyone|here)")


def mentions_of(content: str, allowed: JSON | None) -> tuple[list[int], bool]:
    """Who a message's content pings, as Discord decides from ``allowed_mentions``: with none
    given, every user mention and ``@everyone``/``@here``; with one, only the kinds its
    ``parse`` names and the ``users`` it lists (naming ``users`` in both is a 400)."""
    found = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
    everyone = bool(_EVERYONE.search(content))
    if allowed is None:
        return found, everyone
    parse = list(allowed.get("parse") or [])
    users = allowed.get("users")
    if "users" in parse and users:
        raise errors.invalid_form(
            "allowed_mentions", "parse: users and users are mutually exclusive", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"
        )
    if len(users or []) > 100:
        raise errors.invalid_form("allowed_mentions.users", "Must be 100 or fewer in length.", "BASE_TYPE_MAX_LENGTH")
    listed = {int(u) for u in users or []}
    pinged = found if "users" in parse else [u for u in found if u in listed]
    return pinged, everyone and "everyone" in parse


class MessageStore:
    """Messages by id, their create/edit/delete events in order, and the files served back."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.messages: dict[int, FakeMessage] = {}
        self.events: list[MessageEvent] = []
        self.attachments: dict[int, FakeAttachment] = {}

    def serve(self, attachment: FakeAttachment, *, channel_id: int) -> None:
        """Give the file a URL on the fake server and serve its bytes there."""
        attachment.url = f"{self.fake.base_url}/attachments/{channel_id}/{attachment.id}/{urllib.parse.quote(attachment.filename)}"
        self.attachments[attachment.id] = attachment

    def _resolve_content(
        self, message: FakeMessage | None, payload: JSON, files: dict[int, FakeAttachment], channel_id: int
    ) -> JSON:
        """The message fields after applying ``payload`` (create if ``message`` is None, else edit)."""
        fields: JSON = {}
        if "content" in payload:
            fields["content"] = payload["content"] or ""
            fields["mentions"], fields["mention_everyone"] = mentions_of(
                fields["content"], payload.get("allowed_mentions")
            )
        if "embeds" in payload:
            fields["embeds"] = list(payload["embeds"] or [])
        if "components" in payload:
            fields["components"] = list(payload["components"] or [])
        existing = list(message.attachments) if message is not None else []
        if payload.get("attachments") is not None:
            by_id = {a.id: a for a in existing}
            kept: list[FakeAttachment] = []
            used: set[int] = set()
            for i, entry in enumerate(payload["attachments"]):
                key = int(entry.get("id", -1))
                if key in files and key not in by_id:
                    upload = files[key]
                    upload.filename = entry.get("filename") or upload.filename
                    upload.description = entry.get("description") or upload.description
                    kept.append(upload)
                    used.add(key)
                elif key in by_id:
                    kept.append(by_id[key])
                else:
                    raise errors.invalid_form(
                        f"attachments.{i}.id", "Unknown attachment", "ATTACHMENT_NOT_FOUND"
                    )
            kept += [f for k, f in sorted(files.items()) if k not in used]
            fields["attachments"] = kept
        elif files:
            fields["attachments"] = existing + [f for _, f in sorted(files.items())]
        for attachment in fields.get("attachments", []):
            if attachment.id not in self.attachments:
                self.serve(attachment, channel_id=channel_id)
        return fields

    @staticmethod
    def _is_empty(message: FakeMessage, fields: JSON) -> bool:
        return not any(
            fields.get(k, getattr(message, k)) for k in ("content", "embeds", "components", "attachments")
        )

    def _interaction_metadata(self, record: InteractionRecord, original_id: int | None) -> JSON:
        data: JSON = {
            "id": str(record.id),
            "type": record.type,
            "user": record.user.payload(),
            "authorizing_integration_owners": record.payload.get("authorizing_integration_owners", {}),
        }
        if record.type == 2:
            data["name"] = record.name
            data["command_type"] = 1
        if original_id is not None:
            data["original_response_message_id"] = str(original_id)
        if record.message_id is not None:
            data["interacted_message_id"] = str(record.message_id)
        return data

    async def new_interaction_message(
        self,
        record: InteractionRecord,
        payload: JSON,
        files: dict[int, FakeAttachment],
        *,
        via: str,
        loading: bool = False,
    ) -> FakeMessage:
        is_original = record.original_message_id is None
        flags = int(payload.get("flags") or 0)
        message = FakeMessage(
            id=snowflake(),
            channel_id=record.channel_id,
            guild_id=record.guild_id,
            author=self.fake.bot_user,
            flags=flags if loading else flags & CREATE_FLAGS,
            type=20 if record.type == 2 and is_original else 0,
            tts=bool(payload.get("tts")),
            interaction_id=record.id,
            webhook_id=self.fake.application_id,
            application_id=self.fake.application_id,
        )
        message.interaction_metadata = self._interaction_metadata(
            record, None if is_original else record.original_message_id
        )
        fields = self._resolve_content(None, payload, files, record.channel_id)
        if not loading and self._is_empty(message, fields):
            raise errors.empty_message()
        for key, value in fields.items():
            setattr(message, key, value)
        return await self._store_new(message, via=via, interaction=record)

    async def create(
        self, channel: FakeChannel, payload: JSON, files: dict[int, FakeAttachment], *, via: str
    ) -> FakeMessage:
        message = FakeMessage(
            id=snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=self.fake.bot_user,
            # Ephemeral exists only for interaction responses; Discord ignores it here.
            flags=int(payload.get("flags") or 0) & CREATE_FLAGS & ~FLAG_EPHEMERAL,
            tts=bool(payload.get("tts")),
            message_reference=payload.get("message_reference"),
        )
        if message.message_reference:
            message.type = 19
            message.message_reference = {
                "type": 0,
                "message_id": str(message.message_reference.get("message_id")),
                "channel_id": str(message.message_reference.get("channel_id") or channel.id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id is not None else {}),
            }
        fields = self._resolve_content(None, payload, files, channel.id)
        if self._is_empty(message, fields):
            raise errors.empty_message()
        for key, value in fields.items():
            setattr(message, key, value)
        return await self._store_new(message, via=via, interaction=None)

    async def _store_new(
        self, message: FakeMessage, *, via: str, interaction: InteractionRecord | None
    ) -> FakeMessage:
        self.messages[message.id] = message
        self.record_event("create", message, via=via, interaction=interaction)
        await self.broadcast("MESSAGE_CREATE", message, message.payload(self.fake))
        return message

    async def edit(
        self,
        message: FakeMessage,
        payload: JSON,
        files: dict[int, FakeAttachment],
        *,
        via: str,
        interaction: InteractionRecord | None = None,
        clear_loading: bool = False,
    ) -> FakeMessage:
        fields = self._resolve_content(message, payload, files, message.channel_id)
        flags = message.flags
        if payload.get("flags") is not None:
            flags = (
                (flags & ~EDIT_FLAGS) | (int(payload["flags"]) & EDIT_FLAGS) | (flags & FLAG_COMPONENTS_V2)
            )
        if clear_loading:
            flags &= ~FLAG_LOADING
        if not flags & FLAG_LOADING and self._is_empty(message, fields):
            raise errors.empty_message()
        message.history.append(message.snapshot())
        for key, value in fields.items():
            setattr(message, key, value)
        message.flags = flags
        message.edited_at = utcnow()
        self.record_event("edit", message, via=via, interaction=interaction)
        await self.broadcast("MESSAGE_UPDATE", message, message.payload(self.fake))
        return message

    async def delete(
        self, message: FakeMessage, *, via: str, interaction: InteractionRecord | None = None
    ) -> None:
        message.deleted = True
        self.record_event("delete", message, via=via, interaction=interaction)
        data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self.broadcast("MESSAGE_DELETE", message, data)

    def record_event(
        self, kind: str, message: FakeMessage, *, via: str, interaction: InteractionRecord | None
    ) -> None:
        self.events.append(
            MessageEvent(
                kind=kind,
                message_id=message.id,
                channel_id=message.channel_id,
                at=time.monotonic(),
                via=via,
                interaction_id=interaction.id if interaction is not None else message.interaction_id,
                snapshot=message.snapshot(),
            )
        )
        self.fake._changed()

    async def broadcast(self, event: str, message: FakeMessage, data: JSON) -> None:
        # Ephemeral messages and loading placeholders never reach the gateway.
        if message.flags & (FLAG_EPHEMERAL | FLAG_LOADING):
            return
        if message.guild_id is not None:
            await self.fake.gateway.broadcast(event, data, guild_id=message.guild_id, intent=GUILD_MESSAGES)
            return
        shard0 = self.fake.gateway.shard_sessions(connected=False).get(0)
        if shard0 is not None and shard0.intents & DIRECT_MESSAGES:
            await shard0.dispatch(event, data)
