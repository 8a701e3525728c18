"""Images as Discord uploads: the NSFW rule and fitting a file under the upload limit."""

from __future__ import annotations

import asyncio
import enum
import io

import discord
from PIL import Image as PILImage

from bot import render
from bot.context import ImageReader
from db.models import NsfwPolicy

DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
"""Discord's upload limit for a server without boosts."""


class NsfwMode(enum.StrEnum):
    SHOW = "show"
    SPOILER = "spoiler"
    WITHHOLD = "withhold"


def nsfw_mode(flagged: bool, policy: NsfwPolicy | None, *, in_dm: bool, channel_nsfw: bool) -> NsfwMode:
    """How to post an image: as is, behind a spoiler, or not at all.

    NSFW channels and DMs get flagged images as they are; elsewhere the server's policy
    decides between a spoiler and withholding. ``allow`` still means a spoiler outside NSFW
    channels: a flagged image never shows uncovered in a channel that is not marked NSFW.
    """
    if not flagged or in_dm or channel_nsfw:
        return NsfwMode.SHOW
    if policy is NsfwPolicy.WITHHOLD:
        return NsfwMode.WITHHOLD
    return NsfwMode.SPOILER


def fit_image(data: bytes, limit: int, stem: str) -> tuple[bytes, str]:
    """The image as a file of at most ``limit`` bytes, and its file name.

    PNG as rendered when it fits; else WebP (lossless, then lossy at falling quality),
    then JPEG; then the image is scaled down by steps of 0.75 until one of those fits.

    Raises:
        ValueError: ``limit`` is too small for even a tiny JPEG.
    """
    if len(data) <= limit:
        return data, f"{stem}.png"
    with PILImage.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    scale = 1.0
    while True:
        for fmt, options in (
            ("WEBP", {"lossless": True}),
            ("WEBP", {"quality": 90}),
            ("WEBP", {"quality": 75}),
            ("JPEG", {"quality": 85}),
            ("JPEG", {"quality": 70}),
        ):
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **options)
            if buffer.tell() <= limit:
                return buffer.getvalue(), f"{stem}.{'webp' if fmt == 'WEBP' else 'jpg'}"
        if min(image.size) <= 16:
            raise ValueError(f"cannot fit an image into {limit} bytes")
        scale *= 0.75
        image = image.resize((max(1, int(image.width * 0.75)), max(1, int(image.height * 0.75))))


async def image_file(
    images: ImageReader,
    key: str,
    *,
    stem: str,
    flagged: bool,
    policy: NsfwPolicy | None,
    in_dm: bool,
    channel_nsfw: bool,
    size_limit: int,
) -> tuple[discord.File | None, str | None]:
    """One stored image as an upload that fits, with the NSFW rule applied.

    Returns:
        The file (None when withheld) and a note for the message (or None).
    """
    mode = nsfw_mode(flagged, policy, in_dm=in_dm, channel_nsfw=channel_nsfw)
    if mode is NsfwMode.WITHHOLD:
        return None, render.WITHHELD_NOTE
    data = await images.read(key)
    # Leave room for the multipart envelope around the file.
    fitted, name = await asyncio.to_thread(fit_image, data, max(size_limit - 64 * 1024, 64 * 1024), stem)
    spoiler = mode is NsfwMode.SPOILER
    return discord.File(io.BytesIO(fitted), filename=name, spoiler=spoiler), (
        render.SPOILER_NOTE if spoiler else None
    )
