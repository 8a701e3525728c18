"""Fetching the images of image prompts and ``/blend`` jobs from their URLs.

Jobs carry the URLs of the images a member attached (or pasted): Discord's CDN keeps them,
and the worker downloads them when the job runs, so a job row stays small and a retried
job fetches them again. A URL is fetched only from an allowed host (``IMAGE_URL_HOSTS``;
Discord's CDN by default), because a prompt is user input and a worker usually sits on a
private network: an open fetcher would let anyone make it call internal services.

Errors say what went wrong in words a member understands. Those that will never succeed
(a host that is not allowed, a file that is not an image, too large, gone) are
:class:`ImageRejected`, which fails the job at once with a refund; network trouble raises
:class:`ImageFetchError` so that the job is tried again.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 25 * 2**20
"""Largest image accepted (Discord's own upload limit for most servers)."""
MAX_IMAGE_PIXELS = 40_000_000
"""Largest decoded image accepted (width x height): guards against decompression bombs."""
TIMEOUT_S = 30.0

Fetch = Callable[[str], Image.Image]
"""Returns the RGB image at a URL."""


class ImageFetchError(RuntimeError):
    """A transient failure (network, server error): trying again later may work."""


class ImageRejected(ValueError):
    """The URL can never give a usable image; the message says why."""


def fetch_image(
    url: str,
    *,
    allowed_hosts: frozenset[str] | None,
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout: float = TIMEOUT_S,
) -> Image.Image:
    """Download and decode the image at ``url``.

    Args:
        url: an ``http(s)`` URL.
        allowed_hosts: lower-case host names that may be fetched from; None allows any.
        max_bytes: refuse larger downloads (checked while reading, not only by header).
        timeout: seconds for the connection and each read.

    Returns:
        The image, converted to RGB.

    Raises:
        ImageRejected: a host that is not allowed, a non-image, an oversized image, a
            4xx answer.
        ImageFetchError: the network or the server failed (5xx, timeouts).
    """
    name = _short(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageRejected(f"{name} is not an http(s) link to an image")
    if allowed_hosts is not None and parts.hostname.lower() not in allowed_hosts:
        raise ImageRejected(
            f"images can only be fetched from {', '.join(sorted(allowed_hosts)) or 'no host'}; "
            f"{parts.hostname} is not one of them (attach the image instead)"
        )
    request = urllib.request.Request(url, headers={"User-Agent": "imaginarium-worker"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # the scheme was checked above
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ImageRejected(f"{name} is larger than {max_bytes // 2**20} MiB")
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise ImageRejected(f"{name} could not be downloaded (HTTP {exc.code}); it may have been deleted") from None
        raise ImageFetchError(f"{name}: HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ImageFetchError(f"{name}: {exc}") from None
    if len(data) > max_bytes:
        raise ImageRejected(f"{name} is larger than {max_bytes // 2**20} MiB")
    return decode_image(data, name)


def decode_image(data: bytes, name: str = "the image") -> Image.Image:
    """Decode image bytes to RGB (first frame of an animation), refusing bombs and non-images.

    Raises:
        ImageRejected: not an image Pillow reads, or more than :data:`MAX_IMAGE_PIXELS`.
    """
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ImageRejected(f"{name} is {image.width}x{image.height} pixels, too large to use")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
        raise ImageRejected(f"{name} is not an image I can read (PNG, JPEG, WebP or GIF)") from None
    return image.convert("RGB")


def _short(url: str) -> str:
    # Discord CDN URLs carry long signature queries; the file name is what a member knows.
    path = urlsplit(url).path.rstrip("/")
    tail = path.rsplit("/", 1)[-1] if path else ""
    return f"`{tail}`" if tail else "the image link"
