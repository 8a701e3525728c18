"""With an S3 store, the web sends browsers to a presigned URL of the picture (a real
S3-compatible server on 127.0.0.1), and only viewers who may see it."""

from __future__ import annotations

import hashlib

import boto3
import httpx
import pytest

from core.store import S3ImageReader
from tests.bot.conftest import png
from tests.web.conftest import Gallery, Web


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


async def test_full_pictures_redirect_to_a_presigned_url(gallery: Gallery, web: Web, s3: str) -> None:
    public, _ = await gallery.picture("a comet over the sea", seed=3)
    private, _ = await gallery.picture("a secret comet", seed=4, private=True)
    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="pictures")
    data = png((96, 64), seed=3)
    client.put_object(Bucket="pictures", Key=f"imgs/{hashlib.sha256(data).hexdigest()}.png", Body=data)
    web.app.state.images = S3ImageReader("s3://pictures/imgs", s3)

    answer = await web.client().get(f"/f/{public}")
    assert answer.status_code == 302 and answer.headers["cache-control"] == "private, no-store"
    url = answer.headers["location"]
    assert url.startswith(f"{s3}/pictures/imgs/") and "Signature" in url and "Expires" in url
    async with httpx.AsyncClient() as browser:
        fetched = await browser.get(url)
    assert fetched.status_code == 200 and fetched.content == data
    assert (await web.client().get(f"/f/{private}")).status_code == 404
