"""Signed, short-lived tokens shared by the bot and the web gallery (the mask editor's links),
and the secret both sign with.

A token is ``<payload>.<signature>``: the payload is URL-safe base64 of compact JSON with an
expiry (``exp``, Unix seconds), the signature an HMAC-SHA256 of it with the shared secret.
Nothing in it is secret, only unforgeable: ids, never credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings

SECRET_FILE = "web_secret"


class BadToken(ValueError):
    """A token that is malformed, forged, for another purpose or expired."""


def shared_secret(settings: Settings) -> str:
    """``WEB_SECRET``, or one made once and kept in the data dir (mode 0600), so that the bot
    and the web gallery on one machine sign and check the same tokens."""
    if settings.web_secret is not None:
        return settings.web_secret.get_secret_value()
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()  # another process made it first
    made = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(made)
    return made


def sign(purpose: str, data: dict[str, Any], secret: str, *, seconds: int) -> str:
    """A token carrying ``data`` for ``purpose``, valid for ``seconds``."""
    body = dict(data, p=purpose, exp=int(time.time()) + seconds)
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(payload, secret)}"


def verify(purpose: str, token: str, secret: str) -> dict[str, Any]:
    """The data of a valid token for ``purpose``.

    Raises:
        BadToken: malformed, forged, for another purpose, or expired.
    """
    payload, _, mac = token.partition(".")
    if not payload or not mac or not hmac.compare_digest(mac, _mac(payload, secret)):
        raise BadToken("this link is not valid")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        raise BadToken("this link is not valid") from None
    if not isinstance(data, dict) or data.get("p") != purpose:
        raise BadToken("this link is not valid")
    if int(data.get("exp", 0)) < time.time():
        raise BadToken("this link has expired")
    return data


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _mac(payload: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


# --------------------------------------------------------------------------- the mask editor

MASK_PURPOSE = "mask-editor"
MASK_LINK_SECONDS = 15 * 60


@dataclass(frozen=True, slots=True)
class EditorLink:
    """What a mask-editor link stands for: who may paint over which picture, and where the
    result goes (all Discord ids but the job's)."""

    job_id: str
    index: int
    user_id: int
    guild_id: int | None
    channel_id: int | None
    link_id: str
    """Unique per link: one request per link."""


def editor_url(base_url: str, secret: str, link: EditorLink) -> str:
    """The signed link to the web gallery's mask editor, valid for 15 minutes."""
    data = {
        "j": link.job_id,
        "i": link.index,
        "u": link.user_id,
        "g": link.guild_id,
        "c": link.channel_id,
        "n": link.link_id,
    }
    return f"{base_url.rstrip('/')}/draw/{sign(MASK_PURPOSE, data, secret, seconds=MASK_LINK_SECONDS)}"


def read_editor_link(token: str, secret: str) -> EditorLink:
    """The link a token stands for.

    Raises:
        BadToken: not a valid, unexpired mask-editor token.
    """
    data = verify(MASK_PURPOSE, token, secret)
    try:
        return EditorLink(
            job_id=str(data["j"]),
            index=int(data["i"]),
            user_id=int(data["u"]),
            guild_id=None if data.get("g") is None else int(data["g"]),
            channel_id=None if data.get("c") is None else int(data["c"]),
            link_id=str(data["n"]),
        )
    except (KeyError, TypeError, ValueError):
        raise BadToken("this link is not valid") from None
