"""Image files, kept apart from their database records: a local folder or an S3 bucket.

Keys are content addresses, ``<sha256 of the bytes><suffix>`` (``3f2a...c9.png``): writing
the same image twice stores it once and yields the same key, so a job that runs again after
a crash cannot leave orphan copies behind, and a key never points at changed content.

``IMAGE_STORE`` picks the backend (:func:`open_store`): ``local`` (a folder in the data
dir), ``file:///some/path`` or ``s3://bucket/prefix`` (with ``S3_ENDPOINT_URL`` for MinIO,
R2 and other S3-compatible services; credentials come from boto3's usual sources).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

CONTENT_TYPES: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "application/octet-stream": "",
}
"""Content types the stores accept, with the key suffix each gets."""

_SUFFIX_TYPES = {suffix: ctype for ctype, suffix in CONTENT_TYPES.items()} | {".jpeg": "image/jpeg"}
_KEY = re.compile(r"^[0-9a-f]{64}(\.[a-z]{3,4})?$")


class StoreKeyError(KeyError):
    """No file under this key (or a string that cannot be a key)."""


@runtime_checkable
class ImageStore(Protocol):
    """Where rendered images live; keys are ``<sha256><suffix>`` strings."""

    def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        """Store ``data`` and return its key (the same bytes always give the same key)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises :class:`StoreKeyError` if there are none."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``'s file; deleting a missing key is not an error."""
        ...

    def url(self, key: str) -> str:
        """Where a reader can fetch ``key``: a ``file://`` URL or the object's S3 URL."""
        ...


def key_for(data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
    """The content address of ``data``: its sha256 in hex plus the type's suffix.

    Args:
        data: the file's bytes.
        content_type: one of :data:`CONTENT_TYPES`.
        suffix: a file suffix (``".png"``) instead of the content type.

    Raises:
        ValueError: an unknown content type or suffix.
    """
    if suffix is not None:
        if suffix.lower() not in _SUFFIX_TYPES:
            raise ValueError(f"unsupported image suffix {suffix!r}")
        ext = CONTENT_TYPES[_SUFFIX_TYPES[suffix.lower()]]
    elif content_type in CONTENT_TYPES:
        ext = CONTENT_TYPES[content_type]
    else:
        raise ValueError(
            f"unsupported content type {content_type!r}; expected one of {', '.join(CONTENT_TYPES)}"
        )
    return hashlib.sha256(data).hexdigest() + ext


def content_type_of(key: str) -> str:
    """The content type a key's suffix stands for."""
    return _SUFFIX_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


def _check_key(key: str) -> str:
    # Keys come back from the database and button ids; refusing anything that is not a
    # content address rules out path tricks such as "../../etc/passwd".
    if not _KEY.match(key):
        raise StoreKeyError(key)
    return key


class LocalStore:
    """Images in a folder, two levels of fan-out by hash (``ab/cd/abcd....png``).

    Writes go to a temporary file in the target folder and are renamed into place, so a
    reader (or a crash) never sees half a file.

    Args:
        root: the folder (created if missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (whether or not it exists yet)."""
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        """Store ``data`` atomically; return its key. Storing existing content is a no-op."""
        key = key_for(data, content_type, suffix=suffix)
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        """The bytes under ``key``.

        Raises:
            StoreKeyError: no such file.
        """
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise StoreKeyError(key) from None

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file (False for strings that are not keys)."""
        try:
            return self.path(key).is_file()
        except StoreKeyError:
            return False

    def delete(self, key: str) -> None:
        """Remove ``key``'s file if it is there."""
        self.path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        """A ``file://`` URL of ``key``'s file."""
        return self.path(key).resolve().as_uri()


class S3Store:
    """Images in an S3-compatible bucket under ``prefix`` (thin wrapper over boto3).

    Args:
        bucket: the bucket name.
        prefix: a key prefix inside the bucket (``"imaginarium/"``), may be empty.
        endpoint_url: for S3-compatible services (MinIO, R2, ...); None for AWS.
        client: a ready boto3 S3 client (tests, custom sessions); default a new one.
    """

    def __init__(
        self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        if not bucket:
            raise ValueError("an S3 store needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def object_key(self, key: str) -> str:
        """The object's key in the bucket."""
        return self.prefix + _check_key(key)

    def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        """Upload ``data`` (a single PUT is atomic in S3); return its key."""
        key = key_for(data, content_type, suffix=suffix)
        self.client.put_object(
            Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type_of(key)
        )
        return key

    def get(self, key: str) -> bytes:
        """The bytes under ``key``.

        Raises:
            StoreKeyError: no such object.
        """
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except self.client.exceptions.NoSuchKey:
            raise StoreKeyError(key) from None
        return bytes(response["Body"].read())

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except StoreKeyError:
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Delete the object (S3 treats a missing key as deleted)."""
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def url(self, key: str) -> str:
        """The object's URL (path style on a custom endpoint, virtual-host style on AWS)."""
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/{self.bucket}/{self.object_key(key)}"
        return f"https://{self.bucket}.s3.amazonaws.com/{self.object_key(key)}"


def open_store(settings: Any) -> LocalStore | S3Store:
    """The image store that ``settings.image_store`` names.

    Args:
        settings: :class:`core.settings.Settings` (``image_store``, ``data_dir``,
            ``s3_endpoint_url`` are read).

    Returns:
        ``local``: a :class:`LocalStore` in ``<data_dir>/images``; ``file:///path``: a
        :class:`LocalStore` there; ``s3://bucket/prefix``: an :class:`S3Store`.

    Raises:
        ValueError: an ``IMAGE_STORE`` value of another form.
    """
    spec = settings.image_store
    if spec == "local":
        return LocalStore(Path(settings.data_dir) / "images")
    parsed = urlparse(spec)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.netloc + parsed.path)))
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, endpoint_url=settings.s3_endpoint_url)
    raise ValueError(f"IMAGE_STORE must be 'local', file:///path or s3://bucket/prefix, got {spec!r}")
