"""Point discord.py at a configurable REST base and gateway (``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL``).

discord.py has no constructor option for either endpoint. It builds every REST URL, the
bot's own calls and the interaction callbacks and webhooks alike, from the class
attribute ``discord.http.Route.BASE`` (read when each ``Route`` is made; discord.py's own
``_set_api_version`` sets it the same way), and it opens the gateway at the class
attribute ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` whenever it has no URL of
its own: a plain ``Client``'s first connection, an ``AutoShardedClient`` built with an
explicit ``shard_count``, and every fresh IDENTIFY after Discord invalidates a session.
(An ``AutoShardedClient`` without ``shard_count`` first asks ``GET /gateway/bot``; RESUMEs
go to READY's ``resume_gateway_url``.)

Setting those two public class attributes is therefore the smallest change that covers
every path. The alternatives do not work: the ``proxy=`` option still sends
``https://discord.com`` through a tunnel that a local fake cannot answer without forging
TLS, and a custom connector or resolver would have the same certificate problem. The
attributes are process-wide, which matches one bot per process; tests that configure
them in-process restore the previous values (``configure_endpoints`` returns them).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

_log = logging.getLogger(__name__)

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"


class DiscordEndpoints(NamedTuple):
    """Where discord.py sends REST requests and opens the gateway."""

    api_base: str
    gateway_url: str


def current_endpoints() -> DiscordEndpoints:
    """The endpoints discord.py uses now."""
    return DiscordEndpoints(api_base=Route.BASE, gateway_url=str(DiscordWebSocket.DEFAULT_GATEWAY))


def configure_endpoints(api_base: str | None, gateway_url: str | None) -> DiscordEndpoints:
    """Make discord.py use ``api_base`` for REST and ``gateway_url`` for the gateway.

    Args:
        api_base: the versioned REST base, e.g. ``https://discord.com/api/v10`` or a fake's
            ``http://127.0.0.1:PORT/api/v10``; None or "" means Discord's.
        gateway_url: a ``ws://`` or ``wss://`` URL; None or "" means Discord's.

    Returns:
        The endpoints in use before the call, so a caller can put them back.

    Raises:
        ValueError: a URL with the wrong scheme (one line naming the setting).
    """
    previous = current_endpoints()
    api = (api_base or DISCORD_API_BASE).rstrip("/")
    gateway = gateway_url or DISCORD_GATEWAY_URL
    if not api.startswith(("http://", "https://")):
        raise ValueError(f"DISCORD_API_BASE must be an http(s):// URL, got {api!r}")
    if not gateway.startswith(("ws://", "wss://")):
        raise ValueError(f"DISCORD_GATEWAY_URL must be a ws(s):// URL, got {gateway!r}")
    if api != DISCORD_API_BASE and not gateway_url:
        # A sharded client still finds the gateway through GET /gateway/bot, but a
        # re-IDENTIFY after an invalidated session would go to Discord's real gateway.
        _log.warning(
            "DISCORD_API_BASE is %s but DISCORD_GATEWAY_URL is not set: re-identifies go to Discord", api
        )
    Route.BASE = api
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    return previous


def restore_endpoints(endpoints: DiscordEndpoints) -> None:
    """Put back endpoints returned by :func:`configure_endpoints`."""
    Route.BASE = endpoints.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(endpoints.gateway_url)
