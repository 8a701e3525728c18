"""``--cn`` with a real bot and a real worker: two ControlNets at once follow an attached
picture; a control the model lacks is refused before anything is charged."""

from __future__ import annotations

import io

from PIL import Image

from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation


def _shape_png() -> bytes:
    picture = Image.new("RGB", (64, 64), (30, 70, 225))
    picture.paste((220, 30, 30), (10, 10, 30, 30))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _parameters(png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("parameters", ""))


async def test_two_controls_follow_an_attached_picture(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 10)
    await d.start_worker()

    guided = await d.fake.slash(
        "imagine",
        {"prompt": "a red square --cn canny --cn scribble:0.5"},
        attachments={"image": ("shape.png", _shape_png())},
        user="alice",
    )
    grid = await _result(d, guided)
    job = await d.delivered(guided)
    assert (job.kind, job.status) == (JobKind.IMAGINE, JobStatus.DONE)
    assert job.params["controls"] == [
        {"kind": "canny", "weight": 1.0, "as_is": False},
        {"kind": "scribble", "weight": 0.5, "as_is": False},
    ]
    assert [u.rsplit("/", 1)[-1] for u in job.params["image_urls"]] == ["shape.png"]
    assert d.fake.downloads == ["shape.png"]
    assert 'ControlNet: "canny 1, scribble 0.5"' in _parameters(grid.attachments[0].data)
    spent = await d.balance("alice")
    assert spent == 10 - job.cost

    lacking = await d.fake.slash(
        "imagine",
        {"prompt": "a red square --cn depth"},
        attachments={"image": ("s.png", _shape_png())},
        user="alice",
    )
    said = (await _explanation(d, lacking)).content
    assert "has no `depth` ControlNet" in said and "Nothing was charged" in said
    no_picture = await d.fake.slash("imagine", {"prompt": "a red square --cn canny"}, user="alice")
    assert "needs a picture to follow" in (await _explanation(d, no_picture)).content
    assert await d.balance("alice") == spent
