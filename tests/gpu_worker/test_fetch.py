"""Fetching image-prompt and /blend images: from allowed hosts only, with clear refusals.

A real HTTP server on 127.0.0.1 serves the files (a PNG, a text file, a huge header, a
missing file, a server error).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from core.settings import load_settings
from gpu_worker.fetch import ImageFetchError, ImageRejected, decode_image, fetch_image


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (20, 10), (200, 30, 30, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/cat.png":
            self._send(200, _png(), "image/png")
        elif path == "/notes.txt":
            self._send(200, b"not an image", "text/plain")
        elif path == "/huge.png":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif path == "/broken":
            self._send(503, b"down", "text/plain")
        else:
            self._send(404, b"gone", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


LOCAL = frozenset({"127.0.0.1"})


def test_an_image_from_an_allowed_host_is_fetched_as_rgb(server: str) -> None:
    image = fetch_image(f"{server}/cat.png?ex=abc&is=def", allowed_hosts=LOCAL)
    assert image.mode == "RGB" and image.size == (20, 10)
    assert image.getpixel((0, 0)) == (200, 30, 30)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/notes.txt", "`notes.txt` is not an image I can read"),
        ("/huge.png", "`huge.png` is larger than 25 MiB"),
        ("/missing.png", r"`missing.png` could not be downloaded \(HTTP 404\)"),
    ],
)
def test_links_that_can_never_work_are_refused_with_the_reason(server: str, path: str, message: str) -> None:
    with pytest.raises(ImageRejected, match=message):
        fetch_image(server + path, allowed_hosts=LOCAL)


def test_hosts_outside_the_list_are_never_contacted(server: str) -> None:
    with pytest.raises(ImageRejected, match=r"only be fetched from cdn.discordapp.com.*127.0.0.1 is not one"):
        fetch_image(f"{server}/cat.png", allowed_hosts=frozenset({"cdn.discordapp.com"}))
    with pytest.raises(ImageRejected, match="not an http"):
        fetch_image("file:///etc/passwd", allowed_hosts=None)


def test_server_and_network_errors_are_worth_a_retry(server: str) -> None:
    with pytest.raises(ImageFetchError, match="HTTP 503"):
        fetch_image(f"{server}/broken", allowed_hosts=LOCAL)
    with pytest.raises(ImageFetchError):
        fetch_image("http://127.0.0.1:9/cat.png", allowed_hosts=LOCAL, timeout=2)


def test_decompression_bombs_are_refused() -> None:
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, format="PNG")  # 50 Mpx, a few kB
    with pytest.raises(ImageRejected, match="10000x5000 pixels, too large"):
        decode_image(buffer.getvalue(), "`bomb.png`")


def test_the_host_list_comes_from_settings() -> None:
    assert load_settings().allowed_image_hosts() == {"cdn.discordapp.com", "media.discordapp.net"}
    assert load_settings(image_url_hosts="127.0.0.1, Example.COM").allowed_image_hosts() == {
        "127.0.0.1",
        "example.com",
    }
    assert load_settings(image_url_hosts="*").allowed_image_hosts() is None
