"""A fake Discord (REST API v10 + gateway) on 127.0.0.1 that the real discord.py client talks to.

See :class:`FakeDiscord` for the test API and ``bot.discord_endpoints`` for pointing a bot
(in this process or another) at it.
"""

from tests.fake_discord.errors import DiscordError
from tests.fake_discord.models import (
    ComponentRecord,
    FakeAttachment,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeMessage,
    FakeRole,
    FakeUser,
    InteractionRecord,
    InteractionResponse,
    MessageEvent,
    RequestRecord,
    make_guild,
)
from tests.fake_discord.server import FakeDiscord, FakeDiscordError

__all__ = [
    "ComponentRecord",
    "DiscordError",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeDiscordError",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeRole",
    "FakeUser",
    "InteractionRecord",
    "InteractionResponse",
    "MessageEvent",
    "RequestRecord",
    "make_guild",
]
