"""OAuth2 in the fake Discord: the authorization code grant as Discord documents it.

- ``GET /oauth2/authorize`` (``client_id``, ``redirect_uri``, ``response_type=code``,
  ``scope``, ``state``, optional ``prompt``): a consent page; its form (one button per
  member: who "is logged in to Discord" in this browser) posts back here, and Discord
  redirects to ``redirect_uri?code=…&state=…`` (or ``?error=access_denied&state=…``).
  A ``redirect_uri`` that is not registered, an unknown client or an unsupported
  ``response_type`` is an error page, never a redirect.
- ``POST /api/v10/oauth2/token`` (``application/x-www-form-urlencoded``: ``grant_type=
  authorization_code``, ``code``, ``redirect_uri``; the client by HTTP Basic auth or
  ``client_id`` / ``client_secret`` in the body): a code works once, for ten minutes, with
  the ``redirect_uri`` it was issued for → ``{access_token, token_type: "Bearer",
  expires_in, refresh_token, scope}``; else 400 ``{"error": "invalid_grant"}`` (or
  ``invalid_client`` 401, ``unsupported_grant_type`` 400).
- ``GET /api/v10/users/@me`` with ``Authorization: Bearer <token>``: the member (the
  ``identify`` scope's fields); a bad token is 401.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from aiohttp import web

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord

CODE_SECONDS = 600
TOKEN_SECONDS = 604800


@dataclass
class OAuthState:
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redirect_uris: set[str] = field(default_factory=set)
    codes: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    """code -> (user id, redirect_uri, expiry)."""
    tokens: dict[str, int] = field(default_factory=dict)
    """access token -> user id."""
    exchanges: list[str] = field(default_factory=list)
    """Outcomes of token requests ("ok", "invalid_grant", ...), in order."""


class OAuthApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.state = OAuthState()

    def routes(self, app: web.Application, api_prefix: str) -> None:
        app.router.add_get("/oauth2/authorize", self.authorize_page)
        app.router.add_post("/oauth2/authorize", self.authorize)
        app.router.add_post(f"{api_prefix}/oauth2/token", self.token)

    # -- the browser's side ------------------------------------------------------------------

    async def authorize_page(self, request: web.Request) -> web.Response:
        problem = self._check(request.query)
        if problem:
            return _page(
                f"<h1>Invalid OAuth2 request</h1><p id='oauth-error'>{html.escape(problem)}</p>", 400
            )
        q = request.query
        hidden = "".join(
            f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(q.get(k, ''))}'>"
            for k in ("client_id", "redirect_uri", "response_type", "scope", "state")
        )
        buttons = "".join(
            f"<button type='submit' name='user_id' value='{m.user.id}' id='authorize-{html.escape(m.user.username)}'>"
            f"Authorize as {html.escape(m.user.username)}</button>"
            for guild in self.fake.guilds
            for m in guild.members
            if not m.user.bot
        )
        body = (
            f"<h1>{html.escape(self.fake.bot_user.username)} wants to access your account</h1>"
            f"<p>Scopes: {html.escape(q.get('scope', ''))}</p>"
            f"<form method='post' action='/oauth2/authorize'>{hidden}{buttons}"
            "<button type='submit' name='deny' value='1' id='deny'>Cancel</button></form>"
        )
        return _page(body)

    async def authorize(self, request: web.Request) -> web.Response:
        form = await request.post()
        problem = self._check(form)
        if problem:
            return _page(f"<p id='oauth-error'>{html.escape(problem)}</p>", 400)
        redirect_uri, state = str(form["redirect_uri"]), str(form.get("state", ""))
        extra = {"state": state} if state else {}
        if form.get("deny"):
            raise web.HTTPFound(f"{redirect_uri}?{urlencode({'error': 'access_denied', **extra})}")
        user = self.fake.user(int(str(form["user_id"])))
        code = secrets.token_urlsafe(24)
        self.state.codes[code] = (user.id, redirect_uri, time.monotonic() + CODE_SECONDS)
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, **extra})}")

    def _check(self, params: object) -> str | None:
        get = params.get  # type: ignore[attr-defined]
        if str(get("client_id", "")) != str(self.fake.application_id):
            return "Unknown application"
        if get("response_type") != "code":
            return "Unsupported response_type"
        if str(get("redirect_uri", "")) not in self.state.redirect_uris:
            return "Invalid OAuth2 redirect_uri"
        if "identify" not in str(get("scope", "")).split():
            return "Invalid scope"
        return None

    # -- the application's side --------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return self._refuse("invalid_request", 400)
        form = await request.post()
        client_id, secret = _basic(request.headers.get("Authorization", ""))
        client_id = client_id or str(form.get("client_id", ""))
        secret = secret or str(form.get("client_secret", ""))
        if client_id != str(self.fake.application_id) or secret != self.state.client_secret:
            return self._refuse("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._refuse("unsupported_grant_type", 400)
        issued = self.state.codes.pop(str(form.get("code", "")), None)
        if issued is None or issued[2] < time.monotonic() or issued[1] != form.get("redirect_uri"):
            return self._refuse("invalid_grant", 400)
        access = secrets.token_urlsafe(30)
        self.state.tokens[access] = issued[0]
        self.state.exchanges.append("ok")
        return web.json_response(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": TOKEN_SECONDS,
                "refresh_token": secrets.token_urlsafe(30),
                "scope": "identify",
            }
        )

    def bearer_user(self, request: web.Request) -> int | None:
        """The member an ``Authorization: Bearer`` header stands for (None: not a bearer)."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        user_id = self.state.tokens.get(header.removeprefix("Bearer "))
        if user_id is None:
            raise web.HTTPUnauthorized(
                text='{"message": "401: Unauthorized", "code": 0}', content_type="application/json"
            )
        return user_id

    def _refuse(self, error: str, status: int) -> web.Response:
        self.state.exchanges.append(error)
        return web.json_response({"error": error}, status=status)


def _basic(header: str) -> tuple[str, str]:
    if not header.startswith("Basic "):
        return "", ""
    try:
        raw = base64.b64decode(header.removeprefix("Basic ")).decode()
    except ValueError:
        return "", ""
    client, _, secret = raw.partition(":")
    return client, secret


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html><head><title>Discord</title></head><body>{body}</body></html>",
        content_type="text/html",
        status=status,
    )
