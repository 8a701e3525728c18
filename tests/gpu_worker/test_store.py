"""Image stores: content-addressed local files (and the S3 store, against a real S3-compatible server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from core.settings import load_settings
from gpu_worker.store import ImageStore, LocalStore, S3Store, StoreKeyError, key_for, open_store

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def test_put_get_round_trip_with_content_address(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    key = store.put(PNG)

    assert key == hashlib.sha256(PNG).hexdigest() + ".png"
    assert store.get(key) == PNG
    assert store.exists(key)
    assert store.path(key).is_file() and store.path(key).is_relative_to(tmp_path)
    assert store.url(key).startswith("file://") and store.url(key).endswith(key)
    assert isinstance(store, ImageStore)


def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    first, second = store.put(PNG), store.put(PNG)

    assert first == second
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [first]


def test_content_type_picks_the_suffix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    assert store.put(b"jpeg", "image/jpeg").endswith(".jpg")
    assert store.put(b"webp", suffix=".webp").endswith(".webp")
    with pytest.raises(ValueError, match="unsupported content type"):
        store.put(b"x", "text/html")


def test_missing_and_deleted_keys(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = store.put(PNG)

    store.delete(key)
    store.delete(key)  # deleting twice is fine

    assert not store.exists(key)
    with pytest.raises(StoreKeyError):
        store.get(key)
    with pytest.raises(KeyError):  # what callers that know only KeyError catch
        store.get(key_for(b"never stored"))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "abc.png", "/tmp/x", "A" * 64 + ".png", ""])
def test_strings_that_are_not_keys_are_refused(tmp_path: Path, bad: str) -> None:
    store = LocalStore(tmp_path)

    assert not store.exists(bad)
    with pytest.raises(StoreKeyError):
        store.get(bad)


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("gpu_worker.store.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put(PNG)

    assert not store.exists(key_for(PNG))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_open_store_from_settings(tmp_path: Path) -> None:
    local = open_store(load_settings(data_dir=tmp_path))
    there = open_store(load_settings(data_dir=tmp_path, image_store=f"file://{tmp_path / 'elsewhere'}"))
    s3 = open_store(
        load_settings(image_store="s3://bucket/some/prefix", s3_endpoint_url="http://127.0.0.1:9000")
    )

    assert isinstance(local, LocalStore) and local.root == tmp_path / "images"
    assert isinstance(there, LocalStore) and there.root == tmp_path / "elsewhere"
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("bucket", "some/prefix/", "http://127.0.0.1:9000")
    key = key_for(PNG)
    assert s3.url(key) == f"http://127.0.0.1:9000/bucket/some/prefix/{key}"


def test_s3_store_speaks_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="images")
    store = open_store(load_settings(image_store="s3://images/imgs", s3_endpoint_url=s3_endpoint))
    assert isinstance(store, S3Store)
    key = key_for(PNG)

    assert not store.exists(key)
    with pytest.raises(StoreKeyError):
        store.get(key)
    assert store.put(PNG) == key
    assert store.put(PNG) == key  # the same bytes, the same object
    assert store.exists(key) and store.get(key) == PNG
    head = store.client.head_object(Bucket="images", Key=f"imgs/{key}")
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)
    listed = store.client.list_objects_v2(Bucket="images")["Contents"]
    assert [o["Key"] for o in listed] == [f"imgs/{key}"]
    store.delete(key)
    assert not store.exists(key)
