"""The mask editor's links and what it accepts: one request per signed link, a painted mask of
the picture's shape, a prompt; anything else is a clear refusal and nothing is stored."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.signing import BadToken, EditorLink, editor_url, read_editor_link, sign
from db.models import Mask, WebRequest
from tests.web.conftest import BASE, Gallery, Web

SECRET = "test-secret-" + "x" * 32


def _link(job_id: object, **changes: object) -> str:
    fields = {
        "job_id": str(job_id),
        "index": 0,
        "user_id": 4242,
        "guild_id": 1,
        "channel_id": 2,
        "link_id": "l1",
    }
    fields.update(changes)  # type: ignore[arg-type]
    return editor_url(BASE, SECRET, EditorLink(**fields)).removeprefix(BASE)  # type: ignore[arg-type]


def _png(size: tuple[int, int], painted: tuple[int, int, int, int] | None) -> bytes:
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    if painted:
        canvas.paste((255, 255, 255, 255), painted)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def test_links_are_signed_expire_and_serve_one_purpose() -> None:
    url = _link("j")
    token = url.removeprefix("/draw/")
    assert read_editor_link(token, SECRET).user_id == 4242
    with pytest.raises(BadToken):
        read_editor_link(token, "another secret " + "x" * 30)
    with pytest.raises(BadToken):
        read_editor_link(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], SECRET)
    with pytest.raises(BadToken, match="expired"):
        read_editor_link(sign("mask-editor", {"j": "j"}, SECRET, seconds=-1), SECRET)
    with pytest.raises(BadToken):
        read_editor_link(sign("something else", {"j": "j"}, SECRET, seconds=60), SECRET)


async def test_the_editor_takes_one_painted_mask_per_link(gallery: Gallery, web: Web) -> None:
    _, job = await gallery.picture("a lighthouse at dusk")
    url = _link(job)
    client = web.client()
    page = await client.get(url)
    assert page.status_code == 200 and 'id="mask" width="96" height="64"' in page.text
    assert "a lighthouse at dusk</textarea>" in page.text
    assert (await client.get(url + "/picture")).content.startswith(b"\x89PNG")

    async def send(mask: bytes | None, prompt: str = "a lighthouse in a storm") -> tuple[int, dict]:
        files = {"mask": ("mask.png", mask, "image/png")} if mask is not None else None
        answer = await client.post(url, data={"prompt": prompt}, files=files)
        return answer.status_code, answer.json()

    assert await send(None) == (400, {"error": "Paint the region to repaint first."})
    assert (await send(_png((96, 64), None)))[0] == 400  # nothing painted
    assert "shape" in (await send(_png((64, 64), (0, 0, 32, 64))))[1]["error"]
    assert "could not be read" in (await send(b"not a png"))[1]["error"]
    assert (await send(_png((96, 64), (48, 0, 96, 64)), prompt=" "))[0] == 400
    count = select(func.count()).select_from(WebRequest)
    assert await gallery.session.scalar(count) == 0

    status, body = await send(_png((192, 128), (96, 0, 192, 128)))  # painted at twice the size
    assert (status, body["status"]) == (202, "pending")
    assert (await client.get(url + "/status")).json()["status"] == "pending"
    assert await send(_png((96, 64), (0, 0, 10, 10))) == (
        409,
        {"error": "This link was used already: ask the bot for a new one."},
    )
    request = await gallery.session.scalar(select(WebRequest))
    mask = await gallery.session.get(Mask, request.mask_id)
    stored = Image.open(io.BytesIO(mask.png))
    assert stored.size == (96, 64) and stored.mode == "L"
    assert stored.getpixel((10, 10)) == 0 and stored.getpixel((80, 30)) == 255
    assert request.prompt == "a lighthouse in a storm" and request.image_index == 0


async def test_a_forged_or_expired_link_is_refused(gallery: Gallery, web: Web) -> None:
    _, job = await gallery.picture("a lighthouse at dusk")
    client = web.client()
    forged = _link(job)[:-3] + "abc"
    assert (await client.get(forged)).status_code == 403
    assert (await client.post(forged, data={"prompt": "x"})).status_code == 403
    expired = "/draw/" + sign("mask-editor", {"j": str(job), "i": 0, "u": 1, "n": "x"}, SECRET, seconds=-5)
    page = await client.get(expired)
    assert page.status_code == 403 and "15 minutes" in page.text
