"""/edit with a real bot and a real worker: a member's picture repainted where their mask is
white, every pixel outside it kept; without a mask it is refused before anything is charged."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_edit_repaints_only_where_the_mask_is_white(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 10)
    await d.start_worker()
    picture = Image.new("RGB", (96, 64), (30, 70, 225))
    picture.paste((245, 225, 40), (8, 8, 40, 56))
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (48, 0, 96, 64))  # the right half

    unmasked = await d.fake.slash(
        "edit", {"prompt": "a red circle"}, attachments={"image": ("p.png", _png(picture))}, user="alice"
    )
    assert "attach a `mask`" in (await _explanation(d, unmasked)).content
    assert await d.balance("alice") == 10

    edited = await d.fake.slash(
        "edit",
        {"prompt": "a red circle"},
        attachments={"image": ("p.png", _png(picture)), "mask": ("m.png", _png(mask))},
        user="alice",
    )
    grid = await _result(d, edited)
    job = await d.delivered(edited)
    assert (job.kind, job.status) == (JobKind.EDIT, JobStatus.DONE)
    assert [u.rsplit("/", 1)[-1] for u in job.params["image_urls"]] == ["p.png", "m.png"]
    assert await d.balance("alice") == 10 - job.cost

    # The tiny model's size for 3:2 is 80x48: the left half (the mask's black) is the picture's.
    with Image.open(io.BytesIO(grid.attachments[0].data)) as opened:
        first = opened.convert("RGB").crop((0, 0, opened.width // 2, opened.height // 2))
    assert first.size == (80, 48)
    kept = np.asarray(picture.resize((80, 48), Image.Resampling.LANCZOS), dtype=np.int16)[:, :36]
    assert np.abs(np.asarray(first, dtype=np.int16)[:, :36] - kept).max() <= 2
    assert np.abs(np.asarray(first, dtype=np.int16)[:, 44:] - np.asarray(picture.resize((80, 48)))[:, 44:]).mean() > 5
