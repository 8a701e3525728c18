"""The ASGI app: routes, the signed session cookie, and what each request reaches
(``app.state``: the config, a session factory over the database, the image store's reader)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from web import auth, files, mask, pages
from web.config import WebConfig
from web.limits import BodyLimit
from web.render import render

STATIC = Path(__file__).resolve().parent / "static"
SESSION_DAYS = 30


def create_app(config: WebConfig, sessions: async_sessionmaker[AsyncSession], images: Any) -> Starlette:
    """The web gallery over ``sessions`` (the database) and ``images`` (a ``core.store`` reader)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from db.repositories.gallery_search import warn_if_search_is_text_only

        async with sessions() as session:
            await warn_if_search_is_text_only(session=session)
        yield

    async def login(request: Request) -> Response:
        if not config.login_enabled:
            return render(request, "error.html", {"message": "Login is not set up here."}, status_code=404)
        return auth.login(request, config)

    async def callback(request: Request) -> Response:
        try:
            return await auth.callback(request, config)
        except auth.LoginFailed as failed:
            return render(request, "error.html", {"message": str(failed)}, status_code=400)

    async def logout(request: Request) -> Response:
        form = await request.form()
        if not auth.csrf_ok(request, form.get("csrf")):
            return RedirectResponse("/", status_code=303)
        return auth.logout(request)

    routes = [
        Route("/", pages.recent),
        Route("/top", pages.top),
        Route("/search", pages.search),
        Route("/me", pages.mine),
        Route("/me/nsfw", pages.nsfw_setting, methods=["POST"]),
        Route("/me/loras", pages.my_loras),
        Route("/u/{discord_id}", pages.member),
        Route("/i/{image_id}", pages.image_page),
        Route("/i/{image_id}/like", pages.like, methods=["POST"]),
        Route("/t/{image_id}.webp", files.thumbnail),
        Route("/f/{image_id}", files.full),
        Route("/draw/{token}", mask.editor, methods=["GET"]),
        Route("/draw/{token}", mask.submit, methods=["POST"]),
        Route("/draw/{token}/picture", mask.picture),
        Route("/draw/{token}/status", mask.status),
        Route("/auth/login", login),
        Route("/auth/callback", callback),
        Route("/auth/logout", logout, methods=["POST"]),
        Route("/healthz", lambda request: Response("ok")),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(BodyLimit),  # outermost: nothing reads a body past the ceiling
        Middleware(
            SessionMiddleware,
            secret_key=config.secret,
            session_cookie="imaginarium_session",
            max_age=SESSION_DAYS * 24 * 3600,
            same_site="lax",
            https_only=config.secure_cookies,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.config = config
    app.state.sessions = sessions
    app.state.images = images
    return app
