"""Log in with Discord (OAuth2 authorization code grant, scope ``identify``) and who is looking.

``/auth/login`` sends the browser to Discord's authorization page with a random ``state``
kept in the signed session cookie; ``/auth/callback`` checks it, trades the code for an
access token at ``{api}/oauth2/token`` (client id and secret in HTTP Basic auth, as Discord
documents), reads ``{api}/users/@me`` with it, and keeps only the member's ids and name in
the cookie: the access token is dropped at once (nothing else needs it). Every form that
changes something carries the session's CSRF token.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from db.repositories import upsert_user
from db.repositories.pictures import Viewer
from web.config import WebConfig

log = logging.getLogger(__name__)

SCOPE = "identify"
TIMEOUT = httpx.Timeout(10.0)


class LoginFailed(Exception):
    """Discord did not let the member in (a message for them, no details of ours)."""


def viewer_of(request: Request) -> Viewer:
    """The logged-in member, or an anonymous viewer."""
    user = request.session.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("uid"), int):
        return Viewer()
    return Viewer(user_id=int(user["uid"]), discord_id=int(user["did"]))


def display_name(request: Request) -> str | None:
    user = request.session.get("user")
    return str(user.get("name")) if isinstance(user, dict) and user.get("name") else None


def csrf_token(request: Request) -> str:
    """The session's token for forms (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, sent: Any) -> bool:
    token = request.session.get("csrf")
    return isinstance(token, str) and isinstance(sent, str) and secrets.compare_digest(token, sent)


def login(request: Request, config: WebConfig) -> Response:
    """Off to Discord's authorization page; ``next`` (a path here) is where to come back to."""
    state = secrets.token_urlsafe(24)
    request.session["oauth_state"] = state
    request.session["after_login"] = _local_path(request.query_params.get("next"))
    query = urlencode(
        {
            "client_id": config.client_id or "",
            "redirect_uri": config.redirect_uri,
            "response_type": "code",
            "scope": SCOPE,
            "state": state,
            "prompt": "none",
        }
    )
    return RedirectResponse(f"{config.oauth_url}?{query}", status_code=302)


async def callback(request: Request, config: WebConfig) -> Response:
    """Back from Discord: check ``state``, trade the code, remember the member.

    Raises:
        LoginFailed: the member declined, the state does not match, or Discord refused.
    """
    expected = request.session.pop("oauth_state", None)
    after = _local_path(request.session.pop("after_login", None))
    if "error" in request.query_params:
        raise LoginFailed("Discord did not log you in (you may have declined).")
    state, code = request.query_params.get("state"), request.query_params.get("code")
    if not expected or not state or not secrets.compare_digest(str(expected), state) or not code:
        raise LoginFailed("That login link is stale. Try logging in again.")
    user = await _discord_user(config, code)
    sessions = request.app.state.sessions
    async with sessions() as session, session.begin():
        row = await upsert_user(session=session, discord_id=int(user["id"]))
        uid = row.id
    request.session["user"] = {
        "uid": uid,
        "did": int(user["id"]),
        "name": str(user.get("global_name") or user.get("username") or "member")[:64],
    }
    request.session["csrf"] = secrets.token_urlsafe(24)  # a new session, a new token
    return RedirectResponse(after, status_code=303)


def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


async def _discord_user(config: WebConfig, code: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        try:
            token = await client.post(
                f"{config.api_base}/oauth2/token",
                data={"grant_type": "authorization_code", "code": code, "redirect_uri": config.redirect_uri},
                auth=(config.client_id or "", config.client_secret or ""),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if token.status_code != 200:
                log.warning("OAuth2 token exchange refused (HTTP %d)", token.status_code)
                raise LoginFailed("Discord refused that login. Try again.")
            access = token.json().get("access_token")
            me = await client.get(
                f"{config.api_base}/users/@me", headers={"Authorization": f"Bearer {access}"}
            )
        except httpx.HTTPError as exc:
            log.warning("OAuth2 with Discord failed (%s)", type(exc).__name__)
            raise LoginFailed("Discord could not be reached. Try again in a moment.") from None
    if me.status_code != 200 or not str(me.json().get("id", "")).isdigit():
        log.warning("OAuth2 /users/@me refused (HTTP %d)", me.status_code)
        raise LoginFailed("Discord refused that login. Try again.")
    return dict(me.json())


def _local_path(value: Any) -> str:
    """A path on this site to go back to (never another site: no open redirects)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
