"""The fake Discord's world: users, guilds, channels, messages, attachments and interactions.

Every class here is a plain dataclass that the tests read directly, plus a ``payload``
method that renders it the way Discord's API v10 does, so that the real discord.py
client parses it without special cases.
"""

from __future__ import annotations

import datetime as dt
import itertools
import mimetypes
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1420070400000
_increment = itertools.count()

# Permission bits used by the default guild (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
)

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
DM = 1

# Interaction types and interaction callback types.
INTERACTION_TYPE_NAMES = {
    1: "ping",
    2: "application_command",
    3: "message_component",
    4: "autocomplete",
    5: "modal_submit",
}
RESPONSE_TYPE_NAMES = {
    1: "pong",
    4: "channel_message",
    5: "deferred_channel_message",
    6: "deferred_update_message",
    7: "update_message",
    8: "autocomplete_result",
    9: "modal",
    10: "premium_required",
    12: "launch_activity",
}


def snowflake(at_ms: int | None = None) -> int:
    """A new, unique Discord snowflake whose timestamp is now (or ``at_ms``)."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    # The low 22 bits hold worker/process/increment; a process-wide counter keeps ids unique
    # and increasing even when many are made in the same millisecond.
    return ((ms - DISCORD_EPOCH_MS) << 22) | (next(_increment) % (1 << 22))


def iso(moment: dt.datetime | None) -> str | None:
    """Discord's ISO-8601 timestamp format, or None."""
    return None if moment is None else moment.isoformat()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FakeUser:
    """A Discord user (a person or the bot)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }


@dataclass
class FakeRole:
    """A guild role. The role whose id equals the guild id is @everyone."""

    id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    managed: bool = False

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    """A guild text channel (``nsfw`` marks an age-restricted one) or a DM channel."""

    id: int
    name: str
    type: int = GUILD_TEXT
    nsfw: bool = False
    topic: str | None = None
    position: int = 0
    guild_id: int | None = None
    recipients: list[FakeUser] = field(default_factory=list)

    def payload(self) -> JSON:
        if self.type == DM:
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": None,
                "recipients": [u.payload() for u in self.recipients],
            }
        data: JSON = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "nsfw": self.nsfw,
            "topic": self.topic,
            "permission_overwrites": [],
            "parent_id": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class FakeMember:
    """A user's membership of a guild: role ids and nickname."""

    user: FakeUser
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: dt.datetime = field(default_factory=utcnow)

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> JSON:
        data: JSON = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class FakeGuild:
    """A guild: its channels, roles (the first is @everyone) and members."""

    id: int
    name: str
    owner_id: int
    channels: list[FakeChannel] = field(default_factory=list)
    roles: list[FakeRole] = field(default_factory=list)
    members: list[FakeMember] = field(default_factory=list)
    locale: str = "en-US"

    def __post_init__(self) -> None:
        for channel in self.channels:
            channel.guild_id = self.id
        if not any(r.id == self.id for r in self.roles):
            self.roles.insert(0, FakeRole(id=self.id, name="@everyone", permissions=EVERYONE_PERMISSIONS))

    def channel(self, key: str | int) -> FakeChannel:
        """The channel with this name or id."""
        for channel in self.channels:
            if key in (channel.name, channel.id, str(channel.id)):
                return channel
        raise KeyError(f"guild {self.name!r} has no channel {key!r}")

    def member(self, key: str | int) -> FakeMember:
        """The member with this username or user id."""
        for member in self.members:
            if key in (member.user.username, member.user.id, str(member.user.id)):
                return member
        raise KeyError(f"guild {self.name!r} has no member {key!r}")

    def role(self, key: str | int) -> FakeRole:
        """The role with this name or id."""
        for role in self.roles:
            if key in (role.name, role.id, str(role.id)):
                return role
        raise KeyError(f"guild {self.name!r} has no role {key!r}")

    def permissions_of(self, member: FakeMember) -> int:
        """The member's guild-wide permissions (owner and administrators get all)."""
        if member.user.id == self.owner_id:
            return ALL_PERMISSIONS
        value = 0
        for role in self.roles:
            if role.id == self.id or role.id in member.roles:
                value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def add_member(self, member: FakeMember) -> None:
        if not any(m.user.id == member.user.id for m in self.members):
            self.members.append(member)

    def payload(self, *, joined_at: dt.datetime) -> JSON:
        """The full guild object as sent in GUILD_CREATE."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": self.locale,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [r.payload() for r in self.roles],
            "emojis": [],
            "stickers": [],
            "channels": [c.payload() for c in self.channels],
            "threads": [],
            "members": [m.payload() for m in self.members],
            "member_count": len(self.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "joined_at": iso(joined_at),
            "lazy": True,
            "application_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "incidents_data": None,
        }


def make_guild(
    name: str = "Imaginarium Test",
    *,
    channels: tuple[str, ...] = ("general",),
    nsfw_channels: tuple[str, ...] = ("nsfw-art",),
    members: tuple[str, ...] = ("alice", "bob"),
    admins: tuple[str, ...] = ("bob",),
) -> FakeGuild:
    """A guild with text channels (some NSFW), an Admin role and members.

    The first admin (or else the first member) owns the guild. The bot joins it when a
    :class:`~tests.fake_discord.FakeDiscord` is built with it.
    """
    guild_id = snowflake()
    admin_role = FakeRole(id=snowflake(), name="Admin", permissions=ADMINISTRATOR | MANAGE_GUILD, position=1)
    users = {n: FakeUser(id=snowflake(), username=n, global_name=n.title()) for n in members}
    fake_members = [
        FakeMember(user=u, roles=[admin_role.id] if n in admins else []) for n, u in users.items()
    ]
    owner = next((users[n] for n in admins if n in users), None) or next(iter(users.values()))
    position = itertools.count()
    text = [FakeChannel(id=snowflake(), name=n, position=next(position)) for n in channels]
    nsfw = [FakeChannel(id=snowflake(), name=n, nsfw=True, position=next(position)) for n in nsfw_channels]
    return FakeGuild(
        id=guild_id,
        name=name,
        owner_id=owner.id,
        channels=text + nsfw,
        roles=[FakeRole(id=guild_id, name="@everyone", permissions=EVERYONE_PERMISSIONS), admin_role],
        members=fake_members,
    )


@dataclass
class FakeAttachment:
    """A file: uploaded by the bot with a message, or given by a user to a command option.

    ``data`` holds the exact bytes received; ``url`` serves them back from the fake server.
    """

    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None
    url: str = ""
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def spoiler(self) -> bool:
        """Discord shows a file blurred when its name starts with ``SPOILER_``."""
        return self.filename.startswith("SPOILER_")

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "flags": 0,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.description:
            data["description"] = self.description
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        return data


def attachment_from_bytes(filename: str, data: bytes, *, description: str | None = None) -> FakeAttachment:
    """A FakeAttachment with content type and image size filled in from the bytes (no URL yet)."""
    content_type = mimetypes.guess_type(filename.removeprefix("SPOILER_"))[0]
    width = height = None
    if content_type and content_type.startswith("image/"):
        width, height = _image_size(data)
    return FakeAttachment(
        id=snowflake(),
        filename=filename,
        data=data,
        content_type=content_type,
        description=description,
        width=width,
        height=height,
    )


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    # Discord reports width/height for images; Pillow is a project dependency, but a broken
    # or truncated upload must still be stored (the bot's own validation is what is tested).
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height
    except Exception:
        return None, None


@dataclass(frozen=True)
class ComponentRecord:
    """One interactive or display component of a message, flattened out of its rows."""

    type: int
    custom_id: str | None
    label: str | None
    style: int | None
    emoji: JSON | None
    url: str | None
    disabled: bool
    options: tuple[JSON, ...]
    raw: JSON

    @property
    def emoji_name(self) -> str | None:
        return None if self.emoji is None else self.emoji.get("name")


def walk_components(components: list[JSON]) -> Iterator[JSON]:
    """Every component in a tree of rows, containers, sections and labels, depth first."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            child = component.get(key)
            if isinstance(child, dict):
                yield from walk_components([child])


def flatten_components(components: list[JSON]) -> list[ComponentRecord]:
    """The non-layout components (buttons, selects, text inputs, ...) of a component tree."""
    layout = {1, 9, 17, 18}  # action row, section, container, label
    return [
        ComponentRecord(
            type=c.get("type", 0),
            custom_id=c.get("custom_id"),
            label=c.get("label"),
            style=c.get("style"),
            emoji=c.get("emoji"),
            url=c.get("url"),
            disabled=bool(c.get("disabled", False)),
            options=tuple(c.get("options") or ()),
            raw=c,
        )
        for c in walk_components(components)
        if c.get("type") not in layout
    ]


@dataclass
class FakeMessage:
    """A message as the fake holds it now; ``history`` keeps every earlier version."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    created_at: dt.datetime = field(default_factory=utcnow)
    edited_at: dt.datetime | None = None
    deleted: bool = False
    interaction_id: int | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: JSON | None = None
    message_reference: JSON | None = None
    reactions: dict[str, set[int]] = field(default_factory=dict)
    history: list[JSON] = field(default_factory=list)
    mentions: list[int] = field(default_factory=list)
    """Users the content pings (``allowed_mentions`` applied: :func:`tests.fake_discord.store.mentions_of`)."""
    mention_everyone: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while this is a deferred "<bot> is thinking..." placeholder."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def component_list(self) -> list[ComponentRecord]:
        return flatten_components(self.components)

    @property
    def buttons(self) -> list[ComponentRecord]:
        return [c for c in self.component_list if c.type == 2]

    @property
    def custom_ids(self) -> list[str]:
        return [c.custom_id for c in self.component_list if c.custom_id]

    def component(self, custom_id: str) -> ComponentRecord:
        """The component with this custom_id (KeyError if the message has none)."""
        for component in self.component_list:
            if component.custom_id == custom_id:
                return component
        raise KeyError(f"message {self.id} has no component {custom_id!r} (has {self.custom_ids})")

    def snapshot(self) -> JSON:
        """The fields a test usually compares, frozen at this moment."""
        return {
            "content": self.content,
            "embeds": [dict(e) for e in self.embeds],
            "components": list(self.components),
            "attachments": [(a.filename, a.size) for a in self.attachments],
            "flags": self.flags,
            "edited_at": self.edited_at,
        }

    def _mentioned(self, fake: FakeDiscord | None) -> list[FakeUser]:
        """The pinged users this fake knows (Discord leaves out ids it has no user for)."""
        if fake is None:
            return []
        found = []
        for user_id in self.mentions:
            try:
                found.append(fake.user(user_id))
            except Exception:  # an unknown id pings no one
                continue
        return found

    def payload(self, fake: FakeDiscord | None = None) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": iso(self.edited_at),
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": [user.payload() for user in self._mentioned(fake)],
            "mention_roles": [],
            "mention_channels": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
            "components": self.components,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = self.interaction_metadata
        if self.reactions:
            me = fake.bot_user.id if fake is not None else None
            data["reactions"] = [
                {
                    "emoji": _emoji_payload(key),
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": me in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for key, users in self.reactions.items()
                if users
            ]
        if self.message_reference is not None:
            data["message_reference"] = self.message_reference
            if fake is not None:
                ref = fake.messages.get(int(self.message_reference.get("message_id", 0)))
                data["referenced_message"] = None if ref is None or ref.deleted else ref.payload()
        return data


def _emoji_payload(key: str) -> JSON:
    # Reactions are keyed the way the route spells them: "🔥" or "name:id" for custom emoji.
    if ":" in key:
        name, _, emoji_id = key.rpartition(":")
        return {"id": emoji_id, "name": name}
    return {"id": None, "name": key}


@dataclass
class InteractionResponse:
    """One accepted POST /interactions/{id}/{token}/callback.

    ``latency`` is the time from the fake writing INTERACTION_CREATE to the websocket to
    the callback request arriving: the acknowledgement latency a user would feel.
    """

    type: int
    data: JSON
    received_at: float
    latency: float
    files: list[FakeAttachment] = field(default_factory=list)

    @property
    def type_name(self) -> str:
        return RESPONSE_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & FLAG_EPHEMERAL)


@dataclass
class InteractionRecord:
    """An interaction the fake sent to the bot, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    name: str
    payload: JSON
    guild_id: int | None
    channel_id: int
    user: FakeUser
    created_at: float
    sent_at: float | None = None
    responses: list[InteractionResponse] = field(default_factory=list)
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    message_id: int | None = None
    expired: bool = False
    _fake: FakeDiscord | None = field(default=None, repr=False, compare=False)

    @property
    def type_name(self) -> str:
        return INTERACTION_TYPE_NAMES.get(self.type, str(self.type))

    @property
    def data(self) -> JSON:
        return self.payload.get("data", {})

    @property
    def response(self) -> InteractionResponse | None:
        """The (first, and only accepted) callback, or None while unanswered."""
        return self.responses[0] if self.responses else None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from sending the event to the bot's callback, None while unanswered."""
        return self.response.latency if self.response else None

    @property
    def original(self) -> FakeMessage | None:
        """The message behind ``@original`` (the response message or the clicked message)."""
        if self._fake is None or self.original_message_id is None:
            return None
        return self._fake.messages.get(self.original_message_id)

    @property
    def followups(self) -> list[FakeMessage]:
        """Messages sent with POST /webhooks/{app_id}/{token}, in order."""
        if self._fake is None:
            return []
        return [self._fake.messages[i] for i in self.followup_ids if i in self._fake.messages]

    @property
    def modal(self) -> JSON | None:
        """The modal the bot opened (response type 9), or None."""
        return next((r.data for r in self.responses if r.type == 9), None)

    @property
    def choices(self) -> list[JSON] | None:
        """The autocomplete choices the bot returned (response type 8), or None."""
        return next((list(r.data.get("choices", [])) for r in self.responses if r.type == 8), None)

    async def wait_for_response(self, timeout: float = 10.0) -> InteractionResponse:
        """Wait until the bot calls back for this interaction."""
        assert self._fake is not None
        return await self._fake.wait_for(
            lambda: self.response, timeout=timeout, what=f"a response to {self.name}"
        )

    async def wait_for_followup(self, index: int = 0, timeout: float = 10.0) -> FakeMessage:
        """Wait until the bot has sent follow-up number ``index`` (0: the first) and return it."""
        assert self._fake is not None

        def followup() -> FakeMessage | None:
            followups = self.followups
            return followups[index] if len(followups) > index else None

        return await self._fake.wait_for(followup, timeout=timeout, what=f"follow-up {index} to {self.name}")


@dataclass(frozen=True)
class MessageEvent:
    """A message created, edited or deleted, in the order the fake saw them."""

    kind: str  # "create" | "edit" | "delete"
    message_id: int
    channel_id: int
    at: float
    via: str  # "channel" | "interaction_callback" | "webhook"
    interaction_id: int | None
    snapshot: JSON


@dataclass(frozen=True)
class RequestRecord:
    """One REST request: what was asked and what the fake answered."""

    method: str
    path: str
    route: str
    status: int
    at: float
    error_code: int | None = None
    injected: bool = False


@dataclass(frozen=True)
class CommandSync:
    """One application-command write (bulk overwrite, create, edit or delete)."""

    method: str
    guild_id: int | None
    commands: tuple[JSON, ...]
    at: float


@dataclass
class InjectedFailure:
    """Answer the next ``remaining`` requests that match with ``status`` instead of serving them."""

    method: str | None
    pattern: Any  # compiled regex over the path after /api/v10
    status: int
    remaining: int
    retry_after: float
    is_global: bool


def new_token() -> str:
    return "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
