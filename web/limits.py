"""A ceiling on request bodies, for every route.

Starlette reads a form's file parts into spooled temporary files with no limit of its own, and
a url-encoded form into memory: one client posting gigabytes would fill the disk or the memory
of the web process. The largest body a page sends is a drawn mask (:data:`web.mask.MAX_MASK_BYTES`,
4 MiB, in a multipart form), so anything beyond :data:`MAX_BODY_BYTES` is answered 413 without
being read: from its ``Content-Length`` at once, or, for a body sent in chunks without one, the
moment the count passes the ceiling.
"""

from __future__ import annotations

from typing import Any

MAX_BODY_BYTES = 5 * 1024 * 1024
"""The largest request body read (a 4 MiB mask and its form's fields fit)."""

Scope = dict[str, Any]
Message = dict[str, Any]


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for an HTTP request whose body is larger than ``max_bytes``."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send)


async def _refuse(send: Any) -> None:
    body = b"Request body too large."
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
