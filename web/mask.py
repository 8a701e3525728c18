"""The mask editor for Vary (Region): a page where a member paints the region to repaint.

The bot hands the member a signed link (:func:`core.signing.editor_url`, 15 minutes, one
request): the link itself is the permission, for that member and that picture. Sending the
page stores the mask (re-encoded here: white = repaint, at the picture's size) and a
pending request that the bot queues as if the member had clicked (:mod:`bot.drawing`); the
page then polls ``/draw/{token}/status`` until the bot says "queued" (the result appears in
the Discord channel, with its buttons) or why it refused (nothing charged).
"""

from __future__ import annotations

import io
import uuid

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.signing import BadToken, EditorLink, read_editor_link
from core.store import ImageNotFound
from db.models import Image as ImageRow
from db.models import Job, JobStatus
from db.repositories import upsert_user
from db.repositories import web_requests as requests_repo
from web.render import render

MAX_MASK_BYTES = 4 * 1024 * 1024
MAX_PROMPT = 4000
MIN_COVER = 0.002
"""Less painted than this (0.2 % of the picture) is taken for a slip, not a region."""


async def editor(request: Request) -> Response:
    link, row = await _link_and_picture(request)
    if link is None or row is None:
        return _gone(request, row is None and link is not None)
    image, job = row
    async with request.app.state.sessions() as session:
        sent = await requests_repo.request_by_link(session=session, link_id=link.link_id)
    return render(
        request,
        "draw.html",
        {
            "title": "Vary (Region): draw",
            "token": request.path_params["token"],
            "prompt": job.prompt,
            "width": image.width,
            "height": image.height,
            "sent": sent is not None,
        },
    )


async def picture(request: Request) -> Response:
    """The picture being painted over (the link is the permission to see it)."""
    link, row = await _link_and_picture(request)
    if link is None or row is None:
        return Response("Not found", status_code=404)
    try:
        data = await request.app.state.images.read(row[0].storage_key)
    except ImageNotFound:
        return Response("Not found", status_code=404)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=900"})


async def submit(request: Request) -> Response:
    link, row = await _link_and_picture(request)
    if link is None:
        return JSONResponse({"error": "This link is not valid any more: ask the bot for a new one."}, 403)
    if row is None:
        return JSONResponse({"error": "That picture is no longer available."}, 404)
    image, job = row
    form = await request.form(max_files=1, max_fields=4, max_part_size=MAX_MASK_BYTES)
    prompt = " ".join(str(form.get("prompt") or "").split())
    upload = form.get("mask")
    if not prompt or len(prompt) > MAX_PROMPT:
        return JSONResponse({"error": f"Give a prompt of at most {MAX_PROMPT} characters."}, 400)
    if upload is None or isinstance(upload, str):
        return JSONResponse({"error": "Paint the region to repaint first."}, 400)
    data = await upload.read(MAX_MASK_BYTES + 1)
    try:
        mask = _mask(data, image.width, image.height)
    except ValueError as bad:
        return JSONResponse({"error": str(bad)}, 400)
    async with request.app.state.sessions() as session, session.begin():
        user = await upsert_user(session=session, discord_id=link.user_id)
        made = await requests_repo.create_mask_request(
            session=session,
            link_id=link.link_id,
            user_id=user.id,
            guild_discord_id=link.guild_id,
            channel_id=link.channel_id,
            source_job_id=job.id,
            image_index=image.index,
            prompt=prompt,
            png=mask,
            width=image.width,
            height=image.height,
        )
    if made is None:
        return JSONResponse({"error": "This link was used already: ask the bot for a new one."}, 409)
    return JSONResponse({"status": "pending", "message": "Sent to the bot…"}, 202)


async def status(request: Request) -> Response:
    try:
        link = read_editor_link(request.path_params["token"], request.app.state.config.secret)
    except BadToken as bad:
        return JSONResponse({"error": str(bad)}, 403)
    async with request.app.state.sessions() as session:
        sent = await requests_repo.request_by_link(session=session, link_id=link.link_id)
    if sent is None:
        return JSONResponse({"status": "none"})
    return JSONResponse({"status": sent.status, "message": sent.message or "Waiting for the bot…"})


def _mask(data: bytes, width: int, height: int) -> bytes:
    """The painted canvas as a clean PNG mask (L, 0 or 255) at the picture's size.

    Raises:
        ValueError: too large, not a picture, another shape, or (almost) nothing painted.
    """
    if len(data) > MAX_MASK_BYTES:
        raise ValueError("That mask is too large.")
    try:
        painted = Image.open(io.BytesIO(data))
        if painted.width * painted.height > 4 * 4096 * 4096:
            raise ValueError("That mask is too large.")
        painted.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ValueError("The mask could not be read: paint it again.") from None
    if abs(painted.width / painted.height - width / height) > 0.02:
        raise ValueError("The mask does not have the picture's shape: paint it again.")
    alpha = painted.getchannel("A") if "A" in painted.getbands() else painted.convert("L")
    mask = alpha.resize((width, height), Image.Resampling.BILINEAR).point(lambda v: 255 if v > 127 else 0)
    histogram = mask.histogram()
    if histogram[255] < MIN_COVER * width * height:
        raise ValueError("Paint the region to repaint first.")
    out = io.BytesIO()
    mask.save(out, format="PNG", optimize=True)
    return out.getvalue()


async def _link_and_picture(request: Request) -> tuple[EditorLink | None, tuple[ImageRow, Job] | None]:
    try:
        link = read_editor_link(request.path_params["token"], request.app.state.config.secret)
        job_id = uuid.UUID(link.job_id)
    except (BadToken, ValueError):
        return None, None
    async with request.app.state.sessions() as session:
        job = await session.get(Job, job_id)
        if job is None or job.status is not JobStatus.DONE:
            return link, None
        found = await session.scalar(
            select(ImageRow).where(ImageRow.job_id == job_id, ImageRow.index == link.index)
        )
    return link, (found, job) if found is not None else None


def _gone(request: Request, missing_picture: bool) -> Response:
    message = (
        "That picture is no longer available."
        if missing_picture
        else "This link is not valid any more (they work for 15 minutes): ask the bot for a new one."
    )
    return render(request, "error.html", {"message": message}, status_code=404 if missing_picture else 403)
