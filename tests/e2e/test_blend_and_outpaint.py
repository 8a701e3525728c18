"""Blend, zoom out, pan and vary region with a real bot and a real worker.

The worker fetches the attachments of ``/blend`` from the fake Discord's CDN (127.0.0.1,
allowed by ``IMAGE_URL_HOSTS``), and the buttons under a single image queue inpainting
jobs that the worker renders on the same (tiny) model.
"""

from __future__ import annotations

import io

from PIL import Image

from bot.views.actions import custom_id
from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _parameters(png: bytes) -> str:
    with Image.open(io.BytesIO(png)) as image:
        return str(image.info.get("parameters", ""))


async def test_blend_then_zoom_pan_and_vary_region_of_one_image(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 30)
    await d.start_worker()

    blend = await d.fake.slash(
        "blend",
        {"shape": "square"},
        attachments={"image1": ("red.png", _png((230, 20, 20))), "image2": ("blue.png", _png((20, 20, 230)))},
        user="alice",
    )
    grid = await _result(d, blend)
    assert len(grid.buttons) == 9
    job = await d.delivered(blend)
    assert job.kind is JobKind.BLEND and job.status is JobStatus.DONE
    assert [url.rsplit("/", 1)[-1] for url in job.params["image_urls"]] == ["red.png", "blue.png"]
    assert d.fake.downloads == ["red.png", "blue.png"]

    # 🔄 re-blends the same two images with a new seed.
    reroll = await d.fake.click(grid, custom_id("rr", job.id, 0), user="alice")
    rerolled_grid = await _result(d, reroll)
    rerolled = await d.delivered(reroll)
    assert (rerolled.kind, rerolled.status) == (JobKind.BLEND, JobStatus.DONE)
    assert rerolled.params["image_urls"] == job.params["image_urls"] and rerolled.seed != job.seed
    assert d.fake.downloads == ["red.png", "blue.png"] * 2
    assert "Denoising strength" in _parameters(rerolled_grid.attachments[0].data)
    assert len(rerolled_grid.buttons) == 9

    pick = await d.fake.click(grid, custom_id("u", job.id, 0), user="alice")
    single = await d.fake.wait_for(lambda: pick.original if pick.original and pick.original.attachments else None)
    source = single.attachments[0]

    outcomes = {}
    jobs = [job, rerolled]
    for action, kind, variant in (("z2", JobKind.ZOOM, "2"), ("pr", JobKind.PAN, "right")):
        click = await d.fake.click(single, custom_id(action, job.id, 0), user="alice")
        result = await _result(d, click)
        done = await d.delivered(click)
        assert (done.kind, done.variant, done.status) == (kind, variant, JobStatus.DONE)
        jobs.append(done)
        outcomes[action] = result.attachments[0]
    # Each result is a 2x2 grid of four images: zoomed ones of the source's size, and panned
    # ones half as wide again.
    w, h = source.width or 0, source.height or 0
    assert (outcomes["z2"].width, outcomes["z2"].height) == (2 * w, 2 * h)
    assert (outcomes["pr"].width, outcomes["pr"].height) == (2 * (w * 3 // 2), 2 * h)

    region = await d.fake.click(single, custom_id("vr", job.id, 0), user="alice")
    menu = await d.fake.wait_for(lambda: region.original if region.original and region.original.component_list else None)
    chosen = await d.fake.select(menu, custom_id("rgn", job.id, 0), ["left"], user="alice")
    await _result(d, chosen)
    repainted = await d.delivered(chosen)
    assert (repainted.kind, repainted.variant, repainted.status) == (JobKind.REGION, "left", JobStatus.DONE)
    jobs.append(repainted)

    # Each job was charged once, when it was queued, and captured when it was done.
    assert await d.balance("alice") == 30 - sum(j.cost for j in jobs)
    created = [e.message_id for e in d.fake.message_events if e.kind == "create"]
    assert len(created) == len(set(created))
