"""Fetching image-prompt and /blend images: from allowed hosts only, with clear refusals.

A real HTTP server on 127.0.0.1 serves the files (a PNG, a text file, a huge header, a
missing file, a server error) and redirects (to itself, to private and metadata addresses,
off the allow-list, in a loop). The server's own address is allowed explicitly, as an
operator allows an image host on their own network; every other private address is not.
"""

from __future__ import annotations

import io
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from core.settings import load_settings
from gpu_worker.fetch import (
    ImageFetchError,
    ImageRejected,
    address_allowed,
    decode_image,
    fetch_image,
    parse_networks,
)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (20, 10), (200, 30, 30, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


REDIRECTS = {
    "same-host": "/cat.png",
    "loopback": "http://127.0.0.2/cat.png",
    "loopback-v6": "http://[::1]/cat.png",
    "mapped-v6": "http://[::ffff:10.0.0.1]/cat.png",
    "private": "http://10.1.2.3/cat.png",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "unspecified": "http://0.0.0.0/cat.png",
    "off-list": "http://example.com/cat.png",
    "not-http": "file:///etc/passwd",
}


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
        elif path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", REDIRECTS[path.removeprefix("/redirect/")])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
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


LOCAL = frozenset({"127.0.0.1", "localhost"})
HERE = parse_networks("127.0.0.1")


def test_an_image_from_an_allowed_host_is_fetched_as_rgb(server: str) -> None:
    image = fetch_image(f"{server}/cat.png?ex=abc&is=def", allowed_hosts=LOCAL, private_networks=HERE)
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
        fetch_image(server + path, allowed_hosts=LOCAL, private_networks=HERE)


def test_hosts_outside_the_list_are_never_contacted(server: str) -> None:
    with pytest.raises(ImageRejected, match=r"only be fetched from cdn.discordapp.com.*127.0.0.1 is not one"):
        fetch_image(f"{server}/cat.png", allowed_hosts=frozenset({"cdn.discordapp.com"}))
    with pytest.raises(ImageRejected, match="not an http"):
        fetch_image("file:///etc/passwd", allowed_hosts=None)


def test_a_redirect_to_an_allowed_place_is_followed(server: str) -> None:
    image = fetch_image(f"{server}/redirect/same-host", allowed_hosts=LOCAL, private_networks=HERE)
    assert image.size == (20, 10)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("loopback", "points to an address that images cannot be fetched from"),
        ("loopback-v6", "points to an address"),
        ("mapped-v6", "points to an address"),
        ("private", "points to an address"),
        ("metadata", "points to an address"),
        ("unspecified", "points to an address"),
        ("off-list", "only be fetched from"),
        ("not-http", "not an http"),
    ],
)
def test_every_redirect_hop_is_checked(server: str, target: str, message: str) -> None:
    # The hosts are on the allow-list: the address check alone refuses them.
    hosts = LOCAL | {"127.0.0.2", "::1", "::ffff:10.0.0.1", "10.1.2.3", "169.254.169.254", "0.0.0.0"}
    with pytest.raises(ImageRejected, match=message):
        fetch_image(f"{server}/redirect/{target}", allowed_hosts=hosts, private_networks=HERE)


def test_private_addresses_are_refused_unless_allowed(server: str) -> None:
    with pytest.raises(ImageRejected, match="points to an address"):
        fetch_image(f"{server}/cat.png", allowed_hosts=None)
    name = server.replace("127.0.0.1", "localhost")
    with pytest.raises(ImageRejected, match="points to an address"):
        fetch_image(f"{name}/cat.png", allowed_hosts=None)  # the resolver's answer is checked
    assert fetch_image(f"{name}/cat.png", allowed_hosts=None, private_networks=HERE).size == (20, 10)
    for address in ("127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "::1", "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1", "224.0.0.1", "0.0.0.0"):
        assert not address_allowed(ipaddress.ip_address(address)), address
    for address in ("8.8.8.8", "162.159.128.233", "2606:4700::6810:1"):
        assert address_allowed(ipaddress.ip_address(address)), address


def test_too_many_redirects_are_refused(server: str) -> None:
    with pytest.raises(ImageRejected, match="more than 5 redirects"):
        fetch_image(f"{server}/loop", allowed_hosts=LOCAL, private_networks=HERE)


def test_server_and_network_errors_are_worth_a_retry(server: str) -> None:
    with pytest.raises(ImageFetchError, match="HTTP 503"):
        fetch_image(f"{server}/broken", allowed_hosts=LOCAL, private_networks=HERE)
    with pytest.raises(ImageFetchError):
        fetch_image("http://127.0.0.1:9/cat.png", allowed_hosts=LOCAL, private_networks=HERE, timeout=2)


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
    assert parse_networks(load_settings().image_url_private_networks) == ()
    with pytest.raises(Exception, match="IMAGE_URL_PRIVATE_NETWORKS"):
        load_settings(image_url_private_networks="10.0.0.0/8, not-a-network")
