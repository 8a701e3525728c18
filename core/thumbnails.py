"""WebP thumbnails of rendered images: what gallery pages show before a picture is opened.

Made by the worker when it stores an image (``images.thumbnail_key``), and by the web
gallery for images stored before thumbnails existed. Pillow only.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image as PILImage

SIDE = 512
"""The longer side of a thumbnail, in pixels (a 2x display of a 256-pixel gallery tile)."""
QUALITY = 80


def thumbnail_webp(image: PILImage.Image | bytes) -> bytes:
    """A WebP at most :data:`SIDE` pixels on its longer side, in RGB (alpha on white).

    Raises:
        PIL.UnidentifiedImageError: ``image`` bytes that are not a picture.
    """
    from PIL import Image

    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    picture.load()
    if picture.mode in ("RGBA", "LA", "P"):
        flat = Image.new("RGB", picture.size, "white")
        rgba = picture.convert("RGBA")
        flat.paste(rgba, mask=rgba.getchannel("A"))
        picture = flat
    elif picture.mode != "RGB":
        picture = picture.convert("RGB")
    small = picture.copy()
    small.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, format="WEBP", quality=QUALITY, method=4)
    return out.getvalue()
