"""``imaginarium web`` on the embedded defaults: it serves, and a SIGTERM (what systemd,
Docker and Kubernetes send) stops it cleanly, the embedded Postgres it started included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from db.embedded import EmbeddedPostgres
from tests.web.browser import free_port

pytestmark = pytest.mark.slow


def test_web_serves_on_the_embedded_defaults_and_stops_them_on_sigterm() -> None:
    # Not under pytest's tmp_path (mode 0700): the embedded server may run as another user.
    data = Path(tempfile.mkdtemp(prefix="imaginarium-web-cli-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
    env["IMAGINARIUM_DATA_DIR"] = str(data)
    process = subprocess.Popen(
        [sys.executable, "-m", "imaginarium", "web", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.3)
        assert page.status_code == 200 and "<h1>Recent</h1>" in page.text
        assert EmbeddedPostgres(data / "postgres").is_running()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not EmbeddedPostgres(data / "postgres").is_running()
    finally:
        if process.poll() is None:
            process.kill()
        server = EmbeddedPostgres(data / "postgres")
        if server.is_running():
            server._stop_server()
