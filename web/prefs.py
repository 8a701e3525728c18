"""A member's web gallery preferences, kept with their other settings (``users.settings``).

``web_nsfw``: show their own NSFW-flagged pictures unblurred (off by default; only their
own: such pictures never reach a gallery).
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request

from db.models import User
from db.repositories import update_user_settings
from db.repositories.pictures import Viewer

NSFW_KEY = "web_nsfw"


async def shows_nsfw(request: Request, viewer: Viewer) -> bool:
    if viewer.user_id is None:
        return False
    async with request.app.state.sessions() as session:
        settings = await session.scalar(select(User.settings).where(User.id == viewer.user_id))
    return bool((settings or {}).get(NSFW_KEY, False))


async def set_nsfw(request: Request, viewer: Viewer, on: bool) -> None:
    if viewer.user_id is None:
        return
    async with request.app.state.sessions() as session, session.begin():
        await update_user_settings(session=session, user_id=viewer.user_id, changes={NSFW_KEY: on})
