"""Pictures and thumbnails, each checked against who is asking before a byte is sent.

``/t/{id}.webp`` is the WebP thumbnail the worker made when it stored the picture (made here
for pictures stored before thumbnails existed); ``/f/{id}`` the full picture: from a local
store its bytes, from S3 a redirect to a presigned URL good for five minutes. A picture the
viewer may not see is a 404, the same answer as one that does not exist.

Cache headers: pictures in a gallery are ``public`` for five minutes (they can leave the
gallery when their owner unpublishes them), a member's own others ``private``; both carry
an ``ETag`` (the storage key: content addressed, so it changes with the bytes) for cheap
revalidation. NSFW-flagged pictures (only ever shown to their owner) are blurred here, on
the server, unless the owner opted in: a blurred tile holds none of the picture's detail.
"""

from __future__ import annotations

import asyncio
import io
import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.store import ImageNotFound, S3ImageReader
from core.thumbnails import thumbnail_webp
from db.repositories.gallery import GalleryRow
from db.repositories.pictures import Viewer, picture
from web.auth import viewer_of
from web.params import positive_id
from web.prefs import shows_nsfw

log = logging.getLogger(__name__)

MAX_AGE = 300
PRESIGNED_SECONDS = 300


async def thumbnail(request: Request) -> Response:
    row, viewer = await _allowed(request)
    if row is None:
        return Response("Not found", status_code=404)
    image = row.image
    blur = image.nsfw and not await shows_nsfw(request, viewer)
    etag = f'"{image.thumbnail_key or image.storage_key}{"-b" if blur else ""}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=_cache(row, etag))
    reader = request.app.state.images
    try:
        if image.thumbnail_key and not blur:
            data = await reader.read(image.thumbnail_key)
        else:
            data = await asyncio.to_thread(_made, await reader.read(image.storage_key), blur)
    except ImageNotFound:
        log.warning("image %s: its file is missing from the store", image.id)
        return Response("Not found", status_code=404)
    return Response(data, media_type="image/webp", headers=_cache(row, etag))


async def full(request: Request) -> Response:
    row, viewer = await _allowed(request)
    if row is None:
        return Response("Not found", status_code=404)
    image = row.image
    if image.nsfw and not await shows_nsfw(request, viewer):
        return Response("Not found", status_code=404)  # the tile stays blurred; no way round it
    reader = request.app.state.images
    if isinstance(reader, S3ImageReader):
        url = await asyncio.to_thread(reader.presigned_url, image.storage_key, seconds=PRESIGNED_SECONDS)
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, no-store"})
    etag = f'"{image.storage_key}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=_cache(row, etag))
    try:
        data = await reader.read(image.storage_key)
    except ImageNotFound:
        return Response("Not found", status_code=404)
    media = "image/png" if image.storage_key.endswith(".png") else "application/octet-stream"
    return Response(data, media_type=media, headers=_cache(row, etag))


async def _allowed(request: Request) -> tuple[GalleryRow | None, Viewer]:
    viewer = viewer_of(request)
    image_id = positive_id(request.path_params.get("image_id"))
    if image_id is None:
        return None, viewer
    async with request.app.state.sessions() as session:
        return await picture(session=session, image_id=image_id, viewer=viewer), viewer


def _cache(row: GalleryRow, etag: str) -> dict[str, str]:
    in_gallery = row.image.public and not row.image.nsfw and not row.job.private
    scope = "public" if in_gallery else "private"
    return {"Cache-Control": f"{scope}, max-age={MAX_AGE}", "ETag": etag, "Vary": "Cookie"}


def _made(data: bytes, blur: bool) -> bytes:
    if not blur:
        return thumbnail_webp(data)
    from PIL import Image, ImageFilter

    picture_ = Image.open(io.BytesIO(data)).convert("RGB")
    picture_.thumbnail((64, 64))
    return thumbnail_webp(picture_.filter(ImageFilter.GaussianBlur(6)).resize((256, 256)))
