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


async def test_use_as_control_under_an_image_makes_it_the_picture_to_follow(deployment: Deployment) -> None:
    from bot.views.actions import custom_id

    d = deployment
    await d.grant("alice", 10)
    await d.start_worker()
    first = await d.fake.slash("imagine", {"prompt": "a red square"}, user="alice")
    grid = await _result(d, first)
    source = await d.delivered(first)
    pick = await d.fake.click(grid, custom_id("u", source.id, 2), user="alice")
    single = await d.fake.wait_for(lambda: pick.original if pick.original and pick.original.attachments else None)
    assert "Use as Control" in [b.label for b in single.buttons]

    opened = await d.fake.click(single, custom_id("uc", source.id, 2), user="alice")
    await d.fake.wait_for(lambda: opened.modal, what="the Use as Control form")
    bad = await d.fake.submit_modal(opened, {"prompt": "a blue circle", "controls": "sketch"}, user="alice")
    assert "the control types are" in (await _explanation(d, bad)).content
    opened = await d.fake.click(single, custom_id("uc", source.id, 2), user="alice")
    await d.fake.wait_for(lambda: opened.modal, what="the Use as Control form")
    submitted = await d.fake.submit_modal(
        opened, {"prompt": "a blue circle", "controls": "canny:0.8 scribble"}, user="alice"
    )
    result = await _result(d, submitted)
    job = await d.delivered(submitted)
    assert (job.kind, job.variant, job.status) == (JobKind.IMAGINE, "control", JobStatus.DONE)
    assert (job.parent_id, job.parent_index, job.prompt) == (source.id, 2, "a blue circle")
    assert [c["kind"] for c in job.params["controls"]] == ["canny", "scribble"] and not job.params["image_urls"]
    assert 'ControlNet: "canny 0.8, scribble 1"' in _parameters(result.attachments[0].data)
