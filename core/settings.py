"""One typed settings object, read from the environment and an optional TOML file.

Environment variables win over the file; explicit URLs win over the embedded defaults
(an unset ``DATABASE_URL`` means "start the embedded Postgres", an unset broker URL means
"start the embedded Redis").
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A missing or invalid setting; the message is one line that names it."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imaginarium"


class Settings(BaseSettings):
    """Everything an operator can set. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    broker_url: str | None = Field(default=None, validation_alias=AliasChoices("BROKER_URL", "broker_url"))
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    discord_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "discord_token"))
    discord_api_base: str = Field(
        default="https://discord.com/api/v10",
        validation_alias=AliasChoices("DISCORD_API_BASE", "discord_api_base"),
    )
    discord_gateway_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_GATEWAY_URL", "discord_gateway_url")
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir, validation_alias=AliasChoices("IMAGINARIUM_DATA_DIR", "data_dir")
    )
    models_file: Path | None = Field(default=None, validation_alias=AliasChoices("MODELS_FILE", "models_file"))
    image_store: str = Field(default="local", validation_alias=AliasChoices("IMAGE_STORE", "image_store"))
    s3_endpoint_url: str | None = Field(default=None, validation_alias=AliasChoices("S3_ENDPOINT_URL", "s3_endpoint_url"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))
    log_format: str = Field(default="text", validation_alias=AliasChoices("LOG_FORMAT", "log_format"))
    """``text`` lines, or ``json``: one object per line with the job id (:mod:`core.logs`)."""
    nsfw_detector: str = Field(default="nudenet", validation_alias=AliasChoices("NSFW_DETECTOR", "nsfw_detector"))
    finish_behind: str = Field(default="auto", validation_alias=AliasChoices("FINISH_BEHIND", "finish_behind"))
    """``on``: a worker scores, stores and records a job on a thread of its own while it renders
    the next (:mod:`gpu_worker.finishing`); ``off``: one job at a time; ``auto`` (the default):
    on where the worker renders on a GPU (on a CPU the two would share the same cores)."""
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias=AliasChoices("METRICS_PORT", "metrics_port")
    )
    """Serve Prometheus metrics on this port (``/metrics``); unset: none."""
    image_url_hosts: str = Field(
        default="cdn.discordapp.com,media.discordapp.net",
        validation_alias=AliasChoices("IMAGE_URL_HOSTS", "image_url_hosts"),
    )
    """Hosts a worker may fetch image prompts and /blend images from (comma-separated; ``*``: any)."""
    image_url_private_networks: str = Field(
        default="",
        validation_alias=AliasChoices("IMAGE_URL_PRIVATE_NETWORKS", "image_url_private_networks"),
    )
    """Loopback, private or link-local networks image links may still point to (comma-separated
    addresses or CIDR networks; empty: none). Only for an image host on the operator's own network."""

    web_base_url: str | None = Field(default=None, validation_alias=AliasChoices("WEB_BASE_URL", "web_base_url"))
    """Where members reach the web gallery (behind a reverse proxy: its public https:// URL);
    OAuth2 redirects and the bot's links to it (the mask editor) are made from it. Unset:
    the bot offers no links to it."""
    web_host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("WEB_HOST", "web_host"))
    web_port: int = Field(default=8080, ge=1, le=65535, validation_alias=AliasChoices("WEB_PORT", "web_port"))
    web_secret: SecretStr | None = Field(default=None, validation_alias=AliasChoices("WEB_SECRET", "web_secret"))
    """Signs the web gallery's login cookies and the mask editor's links (bot and web must
    share it); unset: one is made and kept in the data dir."""
    discord_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_CLIENT_ID", "discord_client_id")
    )
    discord_client_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_CLIENT_SECRET", "discord_client_secret")
    )
    """The application's OAuth2 client (Discord developer portal): "Log in with Discord" on
    the web gallery; unset: the gallery is browsed logged out only."""
    discord_oauth_url: str = Field(
        default="https://discord.com/oauth2/authorize",
        validation_alias=AliasChoices("DISCORD_OAUTH_URL", "discord_oauth_url"),
    )

    @field_validator("web_base_url", "discord_oauth_url")
    @classmethod
    def _check_web_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        if value.lower() not in ("text", "json"):
            raise ValueError("must be 'text' or 'json'")
        return value.lower()

    @field_validator("nsfw_detector")
    @classmethod
    def _check_nsfw_detector(cls, value: str) -> str:
        if value.lower() not in ("nudenet", "none"):
            raise ValueError("must be 'nudenet' or 'none'")
        return value.lower()

    @field_validator("finish_behind")
    @classmethod
    def _check_finish_behind(cls, value: str) -> str:
        if value.lower() not in ("auto", "on", "off"):
            raise ValueError("must be 'auto', 'on' or 'off'")
        return value.lower()

    @field_validator("image_url_private_networks")
    @classmethod
    def _check_private_networks(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # a ValueError names the bad entry
        return value

    def allowed_image_hosts(self) -> frozenset[str] | None:
        """The hosts of :attr:`image_url_hosts`, lower-case; None when any host is allowed."""
        hosts = frozenset(h.strip().lower() for h in self.image_url_hosts.split(",") if h.strip())
        return None if "*" in hosts else hosts

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("broker_url", "redis_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # unix:// is redis-py's spelling of a socket (the embedded Redis's REDIS_URL).
        if not value.startswith(
            ("redis://", "rediss://", "redis+socket://", "unix://", "amqp://", "amqps://", "pyamqp://")
        ):
            raise ValueError("must be a redis://, rediss://, redis+socket://, unix:// or amqp:// URL")
        return value

    @field_validator("discord_api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("discord_gateway_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value.rstrip("/")

    @field_validator("image_store")
    @classmethod
    def _check_image_store(cls, value: str) -> str:
        if value != "local" and not value.startswith(("s3://", "file://")):
            raise ValueError("must be 'local', file:///path or s3://bucket/prefix")
        return value

    @property
    def effective_broker_url(self) -> str | None:
        """The Celery broker: ``BROKER_URL`` if set, else ``REDIS_URL``, else None (embedded)."""
        return self.broker_url or self.redis_url

    def require(self, name: str) -> Any:
        """Return setting ``name`` or raise a one-line :class:`SettingsError` naming it."""
        value = getattr(self, name)
        if value is None or value == "":
            env = _ENV_NAMES.get(name, name.upper())
            raise SettingsError(f"{env} is not set: set it in the environment or the config file")
        return value


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "broker_url": "BROKER_URL",
    "redis_url": "REDIS_URL",
    "discord_token": "DISCORD_TOKEN",
    "discord_api_base": "DISCORD_API_BASE",
    "discord_gateway_url": "DISCORD_GATEWAY_URL",
    "data_dir": "IMAGINARIUM_DATA_DIR",
    "models_file": "MODELS_FILE",
    "image_store": "IMAGE_STORE",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "nsfw_detector": "NSFW_DETECTOR",
    "finish_behind": "FINISH_BEHIND",
    "image_url_hosts": "IMAGE_URL_HOSTS",
    "image_url_private_networks": "IMAGE_URL_PRIVATE_NETWORKS",
    "web_base_url": "WEB_BASE_URL",
    "web_host": "WEB_HOST",
    "web_port": "WEB_PORT",
    "web_secret": "WEB_SECRET",
    "discord_client_id": "DISCORD_CLIENT_ID",
    "discord_client_secret": "DISCORD_CLIENT_SECRET",
    "discord_oauth_url": "DISCORD_OAUTH_URL",
}


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment, then ``config_file`` (or ``IMAGINARIUM_CONFIG``).

    Raises:
        SettingsError: one line naming the first bad setting.
    """
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("IMAGINARIUM_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"IMAGINARIUM_CONFIG: file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"IMAGINARIUM_CONFIG: {path} is not valid TOML: {exc}") from None
    # Environment beats the file: only take file keys that the environment does not set.
    values = {k: v for k, v in file_values.items() if _ENV_NAMES.get(k, k.upper()) not in os.environ}
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        env = _ENV_NAMES.get(field, field.upper())
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {env}: {msg}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()
