"""Vary (Region) → Draw…: the bot's link opens the web gallery's mask editor in a real browser,
the member paints and sends, and the repainted result posts in the fake Discord's channel
with its buttons, paid once from the member's credits; outside the paint, the picture stays."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bot.views.actions import custom_id
from core.spec import JobKind
from db.models import Job, JobStatus, WebRequest
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.web.browser import chromium, free_port, in_browser, web_process

pytestmark = pytest.mark.slow

PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"
SECRET = "drawn-region-secret-" + "z" * 32


@pytest.fixture
def deployment_env() -> dict[str, str]:
    return {"WEB_BASE_URL": BASE, "WEB_SECRET": SECRET}


@pytest.fixture
def browser() -> Any:
    with chromium() as driver:
        yield driver


async def test_a_drawn_region_is_repainted_and_posted_in_the_channel(
    deployment: Deployment, browser: Any, tmp_path: Path
) -> None:
    d = deployment
    await d.grant("alice", 20)
    await d.start_worker()
    imagined = await d.fake.slash("imagine", {"prompt": "a red square on grey"}, user="alice")
    grid = await _result(d, imagined)
    job = await d.delivered(imagined)
    pick = await d.fake.click(grid, custom_id("u", job.id, 0), user="alice")
    single = await d.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )
    source = Image.open(io.BytesIO(single.attachments[0].data)).convert("RGB")

    region = await d.fake.click(single, custom_id("vr", job.id, 0), user="alice")
    menu = await d.fake.wait_for(
        lambda: region.original if region.original and region.original.component_list else None
    )
    options = [o["value"] for c in menu.component_list for o in c.options]
    assert "drawn" in options and "left" in options
    chosen = await d.fake.select(menu, custom_id("rgn", job.id, 0), ["drawn"], user="alice")
    answer = await d.fake.wait_for(lambda: chosen.original if chosen.original else None)
    assert answer.ephemeral
    [link] = [c.url for c in answer.component_list if c.url]
    assert link is not None and link.startswith(f"{BASE}/draw/")
    balance = await d.balance("alice")

    async with web_process(d.env | {"WEB_BASE_URL": BASE, "WEB_SECRET": SECRET}, PORT, tmp_path / "web.log"):

        def paint_and_send() -> str:
            from selenium.webdriver.common.action_chains import ActionChains
            from selenium.webdriver.common.by import By

            browser.set_window_size(1280, 2000)  # the whole picture in view
            browser.get(link)
            canvas = browser.find_element(By.ID, "mask")
            browser.execute_script("const b = document.getElementById('brush'); b.value = b.max;")
            box = canvas.rect
            chain = ActionChains(browser)
            # Strokes top to bottom over the right half of the picture.
            for fraction in (0.6, 0.7, 0.8, 0.9):
                x = int(box["width"] * fraction - box["width"] / 2)
                chain.move_to_element_with_offset(canvas, x, int(-box["height"] / 2) + 3).click_and_hold()
                chain.move_by_offset(0, int(box["height"]) - 6).release()
            chain.perform()
            browser.find_element(By.ID, "send").click()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = browser.find_element(By.ID, "status").get_attribute("data-state")
                if state:
                    return f"{state}: {browser.find_element(By.ID, 'status').text}"
                time.sleep(0.2)
            return "timeout: " + browser.find_element(By.ID, "status").text

        said = await in_browser(paint_and_send)
        assert said.startswith("queued: Queued"), said
        # The same link cannot queue a second job.
        again = await in_browser(
            lambda: (browser.refresh(), browser.find_element("id", "send").get_attribute("disabled"))[1]
        )
        assert again is not None

    async with d.sessions() as session:
        request = await session.scalar(select(WebRequest))
        assert request is not None and request.job_id is not None
        drawn_id = request.job_id
    deadline = time.monotonic() + 120
    while True:
        async with d.sessions() as session:
            drawn = await session.get(Job, drawn_id)
        if drawn is not None and drawn.result_message_id is not None:
            break
        assert time.monotonic() < deadline, d.bot.log_tail()
        await __import__("asyncio").sleep(0.2)
    assert (drawn.kind, drawn.variant, drawn.status) == (JobKind.REGION, "drawn", JobStatus.DONE)
    assert drawn.parent_id == job.id and drawn.channel_id == single.channel_id
    assert drawn.params["mask_id"] == request.mask_id
    assert await d.balance("alice") == balance - drawn.cost

    posted = d.fake.messages[drawn.result_message_id]
    assert posted.channel_id == single.channel_id and posted.attachments and posted.buttons
    assert any(str(drawn.id) in (c.custom_id or "") for c in posted.component_list)
    with Image.open(io.BytesIO(posted.attachments[0].data)) as opened:
        first = opened.convert("RGB").crop((0, 0, opened.width // 2, opened.height // 2))
    kept = np.asarray(source.resize(first.size), dtype=np.int16)
    got = np.asarray(first, dtype=np.int16)
    left = first.width * 4 // 10
    assert np.abs(got[:, :left] - kept[:, :left]).mean() < 3  # unpainted: the picture's own
