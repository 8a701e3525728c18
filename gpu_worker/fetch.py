"""Fetching the images of image prompts and ``/blend`` jobs from their URLs.

Jobs carry the URLs of the images a member attached (or pasted): Discord's CDN keeps them,
and the worker downloads them when the job runs, so a job row stays small and a retried
job fetches them again. A prompt is user input and a worker usually sits on a private
network, so an open fetcher would let anyone make it call internal services. Every hop of
a fetch (the first URL and each redirect, at most :data:`MAX_REDIRECTS`) is therefore
checked before it is requested:

* the scheme is ``http`` or ``https`` and the host is on the allow-list
  (``IMAGE_URL_HOSTS``; Discord's CDN by default);
* every address the host resolves to is public: loopback, private, link-local (cloud
  metadata services live there), shared, reserved, multicast and unspecified addresses
  are refused unless an operator lists their network in ``IMAGE_URL_PRIVATE_NETWORKS``.
  The check runs in the connector's resolver, on the addresses the connection then uses,
  so a name cannot resolve to a public address for the check and a private one for the
  connection.

The whole fetch has one deadline and one size cap (checked while reading, not only by
header). Errors say what went wrong in words a member understands. Those that will never
succeed (a host or address that is not allowed, a file that is not an image, too large,
gone, too many redirects) are :class:`ImageRejected`, which fails the job at once with a
refund; network trouble raises :class:`ImageFetchError` so that the job is tried again.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

from PIL import Image, UnidentifiedImageError

MAX_IMAGE_BYTES = 25 * 2**20
"""Largest image accepted (Discord's own upload limit for most servers)."""
MAX_IMAGE_PIXELS = 40_000_000
"""Largest decoded image accepted (width x height): guards against decompression bombs."""
TIMEOUT_S = 30.0
"""Deadline of a whole fetch, redirects included."""
MAX_REDIRECTS = 5

Fetch = Callable[[str], Image.Image]
"""Returns the RGB image at a URL."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ImageFetchError(RuntimeError):
    """A transient failure (network, server error): trying again later may work."""


class ImageRejected(ValueError):
    """The URL can never give a usable image; the message says why."""


def is_public_address(address: Address) -> bool:
    """Whether ``address`` is a globally routed unicast address (no loopback, private,
    link-local, shared, reserved, multicast or unspecified one; IPv4-mapped IPv6 addresses
    are judged by their IPv4 address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def address_allowed(address: Address, private_networks: Iterable[Network] = ()) -> bool:
    """Whether a fetch may connect to ``address``: public, or inside an allowed network."""
    return is_public_address(address) or any(address in net for net in private_networks)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Networks from a comma-separated list (``"10.0.0.0/8, 127.0.0.1"``).

    Raises:
        ValueError: an entry that is not an IP address or network.
    """
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def fetch_image(
    url: str,
    *,
    allowed_hosts: frozenset[str] | None,
    private_networks: Iterable[Network] = (),
    max_bytes: int = MAX_IMAGE_BYTES,
    timeout: float = TIMEOUT_S,
    max_redirects: int = MAX_REDIRECTS,
) -> Image.Image:
    """Download and decode the image at ``url``, checking every hop (see the module docstring).

    Args:
        url: an ``http(s)`` URL.
        allowed_hosts: lower-case host names that may be fetched from; None allows any.
        private_networks: non-public networks the operator allows all the same.
        max_bytes: refuse larger downloads.
        timeout: seconds for the whole fetch.
        max_redirects: redirects followed at most.

    Returns:
        The image, converted to RGB.

    Raises:
        ImageRejected: a host or address that is not allowed (on any hop), a non-image, an
            oversized image, a 4xx answer, too many redirects.
        ImageFetchError: the network or the server failed (5xx, timeouts).
    """
    data = asyncio.run(
        _download(
            url,
            allowed_hosts=allowed_hosts,
            private_networks=tuple(private_networks),
            max_bytes=max_bytes,
            timeout=timeout,
            max_redirects=max_redirects,
        )
    )
    return decode_image(data, _short(url))


def _check_hop(url: str, name: str, allowed_hosts: frozenset[str] | None, private: tuple[Network, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageRejected(f"{name} is not an http(s) link to an image")
    host = parts.hostname.lower()
    if allowed_hosts is not None and host not in allowed_hosts:
        raise ImageRejected(
            f"images can only be fetched from {', '.join(sorted(allowed_hosts)) or 'no host'}; "
            f"{host} is not one of them (attach the image instead)"
        )
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: the resolver checks the addresses it stands for
    if not address_allowed(literal, private):
        raise ImageRejected(f"{name} points to an address that images cannot be fetched from")


async def _download(
    url: str,
    *,
    allowed_hosts: frozenset[str] | None,
    private_networks: tuple[Network, ...],
    max_bytes: int,
    timeout: float,
    max_redirects: int,
) -> bytes:
    import aiohttp

    name = _short(url)
    resolver = _checked_resolver(private_networks, name)
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"User-Agent": "imaginarium-worker"},
            trust_env=False,  # no proxy from the environment: the checks are on the real peer
            auto_decompress=True,
        ) as session:
            for _hop in range(max_redirects + 1):
                _check_hop(url, name, allowed_hosts, private_networks)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise ImageRejected(f"{name} could not be downloaded (a redirect to nowhere)")
                        url = urljoin(str(response.url), location)
                        continue
                    return await _read_body(response, name, max_bytes)
            raise ImageRejected(f"{name} could not be downloaded (more than {max_redirects} redirects)")
    except ImageRejected:
        raise
    except aiohttp.ClientResponseError as exc:
        raise ImageFetchError(f"{name}: HTTP {exc.status}") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        rejected = _rejection_in(exc)
        if rejected is not None:
            raise rejected from None
        raise ImageFetchError(f"{name}: {type(exc).__name__}") from None


async def _read_body(response: Any, name: str, max_bytes: int) -> bytes:
    status = int(response.status)
    if 400 <= status < 500 and status not in (408, 429):
        raise ImageRejected(f"{name} could not be downloaded (HTTP {status}); it may have been deleted")
    if status >= 400 or status < 200:
        raise ImageFetchError(f"{name}: HTTP {status}")
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ImageRejected(f"{name} is larger than {max_bytes // 2**20} MiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ImageRejected(f"{name} is larger than {max_bytes // 2**20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _rejection_in(exc: BaseException) -> ImageRejected | None:
    """The :class:`ImageRejected` the resolver raised, if aiohttp wrapped one in ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ImageRejected):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _checked_resolver(private_networks: tuple[Network, ...], name: str) -> Any:
    """aiohttp's threaded resolver, refusing names that resolve to addresses not allowed."""
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import ThreadedResolver

    class CheckedResolver(AbstractResolver):
        def __init__(self) -> None:
            self._inner = ThreadedResolver()

        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> Any:
            infos = await self._inner.resolve(host, port, family)
            for info in infos:
                if not address_allowed(ipaddress.ip_address(info["host"]), private_networks):
                    raise _RefusedAddress(
                        ImageRejected(f"{name} points to an address that images cannot be fetched from")
                    )
            return infos

        async def close(self) -> None:
            await self._inner.close()

    return CheckedResolver()


class _RefusedAddress(OSError):
    """Carries the rejection through aiohttp, which wraps resolver errors that are OSErrors."""

    def __init__(self, rejection: ImageRejected) -> None:
        super().__init__(str(rejection))
        self.__cause__ = rejection


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
