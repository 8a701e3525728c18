"""The bot's image reader reads what the worker's store wrote, without importing the worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import load_settings
from core.store import ImageNotFound, LocalImageReader, open_image_reader
from gpu_worker.store import LocalStore, open_store


async def test_an_image_the_worker_stored_is_read_back_by_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, image_store="local")
    key = open_store(settings).put(b"\x89PNG fake bytes")

    assert await open_image_reader(settings).read(key) == b"\x89PNG fake bytes"


async def test_a_file_url_store_is_read_from_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    key = LocalStore(folder).put(b"abc")
    settings = load_settings(data_dir=tmp_path / "data", image_store=folder.as_uri())

    assert await open_image_reader(settings).read(key) == b"abc"


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "0" * 64 + "/../x", "missing"])
async def test_keys_that_are_not_content_addresses_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ImageNotFound):
        await LocalImageReader(tmp_path).read(key)


async def test_a_missing_image_is_reported_as_not_found(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound):
        await LocalImageReader(tmp_path).read("a" * 64 + ".png")


def test_the_reader_does_not_load_the_worker() -> None:
    code = "import core.store, sys; assert not any(m.startswith(('gpu_worker', 'torch')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
