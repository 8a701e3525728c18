"""bot.discord_endpoints: where discord.py sends REST calls and opens the gateway."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.discord_endpoints import (
    DISCORD_API_BASE,
    DISCORD_GATEWAY_URL,
    configure_endpoints,
    current_endpoints,
    restore_endpoints,
)


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    previous = current_endpoints()
    yield
    restore_endpoints(previous)


def test_routes_and_gateway_follow_the_configured_endpoints() -> None:
    previous = configure_endpoints("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway")
    assert previous == (DISCORD_API_BASE, DISCORD_GATEWAY_URL)
    route = Route(
        "POST", "/interactions/{webhook_id}/{webhook_token}/callback", webhook_id=1, webhook_token="t"
    )
    assert route.url == "http://127.0.0.1:9/api/v10/interactions/1/t/callback"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:9/gateway"

    restore_endpoints(previous)
    assert Route("GET", "/users/@me").url == "https://discord.com/api/v10/users/@me"
    assert str(DiscordWebSocket.DEFAULT_GATEWAY) == DISCORD_GATEWAY_URL


def test_unset_means_discord() -> None:
    configure_endpoints("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
    configure_endpoints(None, "")
    assert current_endpoints() == (DISCORD_API_BASE, DISCORD_GATEWAY_URL)


def test_custom_api_without_gateway_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.discord_endpoints"):
        configure_endpoints("http://127.0.0.1:9/api/v10", None)
    assert "DISCORD_GATEWAY_URL is not set" in caplog.text


@pytest.mark.parametrize(
    ("api", "gateway", "message"),
    [
        ("ftp://x/api/v10", None, "DISCORD_API_BASE"),
        (None, "http://127.0.0.1:9/gateway", "DISCORD_GATEWAY_URL"),
    ],
)
def test_wrong_schemes_are_refused(api: str | None, gateway: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_endpoints(api, gateway)
    assert current_endpoints() == (DISCORD_API_BASE, DISCORD_GATEWAY_URL)
