"""Keeping secrets and server paths out of log lines and out of what users read.

Two tools, used by every process:

* :class:`RedactingFilter`, installed on the root handlers by :func:`install_log_redaction`:
  interaction and webhook tokens in Discord URLs (discord.py logs the route of a 429, and the
  URL carries the token), the bot token and other configured secrets, and passwords in
  database and broker URLs are replaced before any handler writes the record, tracebacks
  included;
* :func:`user_safe`, for texts that reach a Discord message: it removes filesystem paths
  and anything :func:`redact` would, and keeps one short line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_DISCORD_TOKEN_URLS = re.compile(
    r"(?P<head>/(?:webhooks|interactions)/\d+/)(?P<token>[A-Za-z0-9_\-.]{20,})", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)(?=@)", re.IGNORECASE)
_BOT_TOKEN_SHAPE = re.compile(r"\b[A-Za-z0-9_\-]{23,28}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40}\b")
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Bot|Bearer)\s+)(?P<token>[A-Za-z0-9_\-.]{20,})")
# Absolute POSIX paths of two or more segments, home-relative paths and Windows drive paths;
# URLs are left alone (their path follows "//host").
_PATH = re.compile(
    r"(?<![\w/:.])(?:~|[A-Za-z]:)?(?:[/\\][\w.\-+@]+){2,}[/\\]?"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with tokens in Discord URLs, URL passwords, bot-token-shaped strings, auth
    headers and each of ``secrets`` replaced by :data:`REDACTED`."""
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, REDACTED)
    text = _DISCORD_TOKEN_URLS.sub(lambda m: m.group("head") + REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    text = _AUTH_HEADER.sub(lambda m: m.group("head") + REDACTED, text)
    return _BOT_TOKEN_SHAPE.sub(REDACTED, text)


def strip_paths(text: str) -> str:
    """``text`` with filesystem paths replaced by their last part (a file name says enough)."""

    def last_part(match: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", match.group(0)) if p.strip()]
        return f"`{parts[-1].strip()}`" if parts else ""

    return _PATH.sub(last_part, text)


def user_safe(text: str, *, limit: int = 200) -> str:
    """One line for a user: no secrets, no server paths, at most ``limit`` characters."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    cleaned = strip_paths(redact(first))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message and traceback through :func:`redact`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return True
        cleaned = redact(message, self.secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


def install_log_redaction(secrets: Iterable[str] = ()) -> RedactingFilter:
    """Put one :class:`RedactingFilter` on every handler of the root logger (call after
    ``logging.basicConfig``); records of every logger that propagates pass through it."""
    found = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(found)
    return found
