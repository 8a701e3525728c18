"""What the web gallery needs from the settings, read once when it starts."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from core.signing import shared_secret


@dataclass(frozen=True, slots=True)
class WebConfig:
    base_url: str
    """Where browsers reach the gallery (behind a reverse proxy: its public URL)."""
    secret: str
    """Signs login cookies and mask-editor links."""
    client_id: str | None
    client_secret: str | None
    oauth_url: str
    """Discord's authorization page."""
    api_base: str
    """Discord's REST API (the OAuth2 token exchange and ``/users/@me``)."""

    @property
    def login_enabled(self) -> bool:
        return bool(self.client_id and self.client_secret)

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def redirect_uri(self) -> str:
        """What to register as the OAuth2 redirect in Discord's developer portal."""
        return f"{self.base_url}/auth/callback"

    @classmethod
    def from_settings(cls, settings: Settings) -> WebConfig:
        return cls(
            base_url=settings.web_base_url or f"http://{settings.web_host}:{settings.web_port}",
            secret=shared_secret(settings),
            client_id=settings.discord_client_id,
            client_secret=(
                settings.discord_client_secret.get_secret_value() if settings.discord_client_secret else None
            ),
            oauth_url=settings.discord_oauth_url or "https://discord.com/oauth2/authorize",
            api_base=settings.discord_api_base,
        )
