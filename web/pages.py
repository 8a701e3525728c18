"""The gallery's pages: grids of pictures, one picture with its recipe and lineage, likes.

Grids page by keyset (``?after=`` / ``?before=`` an image id: as fast at the millionth
picture as at the first); searches page through their ranked list by number (``?page=``).
What a grid may hold is decided in :mod:`db.repositories.gallery` (every server whose
gallery is on, the same rules as ``/gallery`` in Discord) and a single picture in
:mod:`db.repositories.pictures` (the gallery's, or the viewer's own).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from core import prompt as grammar
from core.spec import JobSpec
from core.text import without_unstorable
from db.embeddings import embed_query
from db.models import Guild
from db.repositories import gallery as repo
from db.repositories.gallery import Anchor, GalleryRow, GalleryWhere
from db.repositories.pictures import Viewer, lineage, own_pictures, picture
from db.repositories.trained_loras import loras_with_samples
from web.auth import csrf_ok, viewer_of
from web.params import positive_id
from web.prefs import set_nsfw, shows_nsfw
from web.render import render

PER_PAGE = 24
MAX_QUERY = 200
PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "all": None}


@dataclasses.dataclass(frozen=True, slots=True)
class Tile:
    image_id: int
    prompt: str
    likes: int
    liked: bool
    owner_discord_id: int
    nsfw: bool
    private: bool


def _tile(row: GalleryRow) -> Tile:
    return Tile(
        image_id=row.image.id,
        prompt=row.job.prompt,
        likes=int(row.likes),
        liked=bool(row.liked),
        owner_discord_id=int(row.owner_discord_id),
        nsfw=row.image.nsfw,
        private=row.job.private or not row.image.public,
    )


async def recent(request: Request) -> Response:
    return await _grid(request, GalleryWhere(), title="Recent", here="/")


async def top(request: Request) -> Response:
    period = request.query_params.get("period", "week")
    if period not in PERIODS:
        period = "week"
    span = PERIODS[period]
    since = datetime.now(UTC) - span if span is not None else None
    where = GalleryWhere(by_likes=True, since=since)
    return await _grid(request, where, title="Top", here=f"/top?period={period}", extra={"period": period})


async def search(request: Request) -> Response:
    # A NUL (%00) is no word and no database takes it: a space.
    words = " ".join(without_unstorable(request.query_params.get("q", "")).split())[:MAX_QUERY]
    if not words:
        return render(request, "search.html", {"q": "", "tiles": [], "title": "Search"})
    try:
        page = max(0, min(int(request.query_params.get("page", "0")), 1000))
    except ValueError:
        page = 0
    viewer = viewer_of(request)
    async with request.app.state.sessions() as session:
        found = await repo.gallery_rows(
            session=session,
            guild_id=None,
            where=GalleryWhere(search=words),
            limit=PER_PAGE,
            offset=page * PER_PAGE,
            viewer_discord_id=viewer.discord_id,
            embed=embed_query,
        )
    tiles = [_tile(row) for row in found.rows]
    return render(
        request,
        "search.html",
        {
            "q": words,
            "tiles": tiles,
            "title": f"Search: {words}",
            "corrected": found.corrected,
            "page": found.offset // PER_PAGE,
            "has_next": found.has_more,
            "total": found.total,
        },
    )


async def member(request: Request) -> Response:
    discord_id = positive_id(request.path_params["discord_id"])
    if discord_id is None:
        return render(request, "error.html", {"message": "No such member."}, status_code=404)
    where = GalleryWhere(owner_discord_id=discord_id)
    return await _grid(
        request, where, title="Member's pictures", here=f"/u/{discord_id}", extra={"member": discord_id}
    )


async def mine(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer.anonymous:
        return RedirectResponse("/auth/login?next=/me", status_code=302)
    before = positive_id(request.query_params.get("before"))
    async with request.app.state.sessions() as session:
        rows, more = await own_pictures(session=session, viewer=viewer, limit=PER_PAGE, before_id=before)
    tiles = [_tile(row) for row in rows]
    return render(
        request,
        "mine.html",
        {
            "title": "My pictures",
            "tiles": tiles,
            "older": tiles[-1].image_id if more and tiles else None,
            "show_nsfw": await shows_nsfw(request, viewer),
        },
    )


async def my_loras(request: Request) -> Response:
    """The viewer's trained LoRAs (``/train``): status, trigger, model, and their samples."""
    viewer = viewer_of(request)
    if viewer.anonymous or viewer.user_id is None:
        return RedirectResponse("/auth/login?next=/me/loras", status_code=302)
    async with request.app.state.sessions() as session:
        found = await loras_with_samples(session=session, user_id=viewer.user_id)
    return render(request, "loras.html", {"title": "My LoRAs", "loras": found})


async def image_page(request: Request) -> Response:
    viewer = viewer_of(request)
    image_id = positive_id(request.path_params.get("image_id"))
    async with request.app.state.sessions() as session:
        row = await picture(session=session, image_id=image_id or 0, viewer=viewer) if image_id else None
        if row is None:
            return render(request, "error.html", {"message": "That picture is not here."}, status_code=404)
        tree = await lineage(session=session, job_id=row.job.id, viewer=viewer)
        guild = await session.get(Guild, row.job.guild_id) if row.job.guild_id is not None else None
    job = row.job
    spec = dataclasses.replace(JobSpec.from_dict(job.params), seed=row.image.seed)
    jump = None
    if guild is not None and job.result_channel_id and job.result_message_id:
        jump = (
            f"https://discord.com/channels/{guild.discord_id}/{job.result_channel_id}/{job.result_message_id}"
        )
    in_gallery = row.image.public and not row.image.nsfw and not job.private
    return render(
        request,
        "image.html",
        {
            "title": job.prompt[:80] or "Picture",
            "row": row,
            "tile": _tile(row),
            "recipe": grammar.format(spec),
            "reuse": grammar.format(dataclasses.replace(spec, seed=None)),
            "jump": jump,
            "tree": tree,
            "in_gallery": in_gallery,
            "mine": viewer.user_id is not None and viewer.user_id == job.user_id,
        },
    )


async def like(request: Request) -> Response:
    """POST: like (``liked=1``) or unlike a gallery picture; JSON for fetch(), a redirect for forms."""
    viewer = viewer_of(request)
    form = await request.form()
    image_id = positive_id(request.path_params.get("image_id"))
    if viewer.anonymous or not csrf_ok(request, form.get("csrf")) or image_id is None:
        return JSONResponse({"error": "Log in to like pictures."}, status_code=403)
    on = form.get("liked") == "1"
    user_id = viewer.user_id or 0
    async with request.app.state.sessions() as session, session.begin():
        # Only pictures in a gallery can be liked: anything else is "not here", for anyone.
        if await picture(session=session, image_id=image_id, viewer=Viewer()) is None:
            return JSONResponse({"error": "That picture is not here."}, status_code=404)
        if on:
            await repo.like_image(session=session, user_id=user_id, image_id=image_id)
        else:
            await repo.unlike_image(session=session, user_id=user_id, image_id=image_id)
        count = await repo.count_likes(session=session, image_id=image_id)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"likes": count, "liked": on})
    return RedirectResponse(f"/i/{image_id}", status_code=303)


async def nsfw_setting(request: Request) -> Response:
    viewer = viewer_of(request)
    form = await request.form()
    if viewer.anonymous or not csrf_ok(request, form.get("csrf")):
        return Response("Forbidden", status_code=403)
    await set_nsfw(request, viewer, form.get("show") == "1")
    return RedirectResponse("/me", status_code=303)


async def _grid(
    request: Request, where: GalleryWhere, *, title: str, here: str, extra: dict[str, Any] | None = None
) -> Response:
    viewer = viewer_of(request)
    after, before = positive_id(request.query_params.get("after")), positive_id(request.query_params.get("before"))
    anchor = Anchor(after) if after else Anchor(before, backwards=True) if before else None
    async with request.app.state.sessions() as session:
        found = await repo.gallery_rows(
            session=session,
            guild_id=None,
            where=where,
            limit=PER_PAGE,
            anchor=anchor,
            viewer_discord_id=viewer.discord_id,
        )
    tiles = [_tile(row) for row in found.rows]
    going_back = anchor is not None and anchor.backwards
    newer = (
        tiles[0].image_id if tiles and (anchor is not None and (not going_back or found.has_more)) else None
    )
    older = tiles[-1].image_id if tiles and (going_back or found.has_more) else None
    sep = "&" if "?" in here else "?"
    context = {
        "title": title,
        "tiles": tiles,
        "newer": f"{here}{sep}before={newer}" if newer else None,
        "older": f"{here}{sep}after={older}" if older else None,
        **(extra or {}),
    }
    return render(request, "grid.html", context)


