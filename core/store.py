"""Reading stored images by key, for processes that must not load the worker (the bot).

The GPU worker writes images into the store (``gpu_worker.store``); the bot only reads them
to post them, and must not import the worker's package to do so. This module reads the
same layout: keys are content addresses (``<sha256><suffix>``); a local store keeps
``<root>/ab/cd/<key>`` with ``<root>`` = ``<data_dir>/images`` for ``IMAGE_STORE=local``
or the path of a ``file://`` URL; an S3 store keeps ``<prefix>/<key>`` (read with
``boto3``, installed with the ``s3`` extra).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from core.settings import Settings, SettingsError

LOCAL_IMAGES_DIR = "images"
"""The folder under the data dir that holds a local store."""

_KEY = re.compile(r"^[0-9a-f]{64}(\.[a-z]{3,4})?$")


def check_key(key: str) -> str:
    """``key`` if it is a content address (so it cannot name a path outside the store).

    Raises:
        ImageNotFound: anything else.
    """
    if not _KEY.match(key):
        raise ImageNotFound(f"not a storage key: {key[:80]!r}")
    return key


class ImageNotFound(FileNotFoundError):
    """No image is stored under the key."""


def local_store_root(settings: Settings) -> Path | None:
    """The folder of a local or ``file://`` store; None for an S3 store."""
    if settings.image_store == "local":
        return Path(settings.data_dir) / LOCAL_IMAGES_DIR
    if settings.image_store.startswith("file://"):
        parts = urlsplit(settings.image_store)
        return Path(unquote(parts.netloc + parts.path))
    return None


class LocalImageReader:
    """Reads images from a local store (``<root>/ab/cd/<key>``, as ``gpu_worker.store.LocalStore``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        """The file of ``key`` (whether or not it exists).

        Raises:
            ImageNotFound: ``key`` is not a storage key.
        """
        check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def read_sync(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError:
            raise ImageNotFound(f"no stored image {key!r} in {self.root}") from None

    async def read(self, key: str) -> bytes:
        """The bytes stored under ``key`` (read in a thread: disks can be slow)."""
        return await asyncio.to_thread(self.read_sync, key)


class S3ImageReader:
    """Reads images from ``s3://bucket/prefix`` (needs ``boto3``)."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # optional dependency: only S3 deployments install it

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def read_sync(self, key: str) -> bytes:
        name = self.prefix + check_key(key)
        try:
            return bytes(self._s3().get_object(Bucket=self.bucket, Key=name)["Body"].read())
        except self._s3().exceptions.NoSuchKey:
            raise ImageNotFound(f"no stored image {key!r} in s3://{self.bucket}/{self.prefix}") from None

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self.read_sync, key)

    def presigned_url(self, key: str, *, seconds: int = 300) -> str:
        """A URL that fetches ``key`` straight from the bucket for ``seconds`` (the web
        gallery redirects browsers there instead of passing the bytes through itself)."""
        return str(
            self._s3().generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.prefix + check_key(key)}, ExpiresIn=seconds
            )
        )


def open_image_reader(settings: Settings) -> LocalImageReader | S3ImageReader:
    """The reader for the configured store (``IMAGE_STORE``).

    Raises:
        SettingsError: an S3 store without ``boto3`` installed.
    """
    root = local_store_root(settings)
    if root is not None:
        return LocalImageReader(root)
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise SettingsError(
            "IMAGE_STORE is an s3:// URL but boto3 is not installed (pip install imaginarium[s3])"
        ) from None
    return S3ImageReader(settings.image_store, settings.s3_endpoint_url)
