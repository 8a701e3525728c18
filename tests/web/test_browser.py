"""The web gallery in a real browser (Debian's chromium, headless, through chromedriver):
``imaginarium web`` as its own process on the embedded Postgres (pgvector: search by
meaning), logging in through the fake Discord's OAuth2 consent page."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import JobKind
from db import embeddings
from db import repositories as repo
from db.repositories import gallery_search
from db.session import create_engine, create_session_factory
from tests.fake_discord import FakeDiscord, make_guild
from tests.web.browser import chromium, free_port, in_browser, web_process
from tests.web.conftest import Gallery

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord([make_guild(members=("alice", "bob"))]) as server:
        yield server


@pytest.fixture
async def seeded(
    fresh_vector_db_url: str, fake: FakeDiscord, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    engine = create_engine(fresh_vector_db_url)
    sessions = create_session_factory(engine)
    root = tmp_path / "images"
    async with sessions() as session, session.begin():
        guild = await repo.upsert_guild(session=session, discord_id=fake.default_guild.id)
        world = Gallery(session, root, guild)
        await world.user("bob", fake.user("bob").id)
        ids: dict[str, Any] = {}
        ids["hut"], hut_job = await world.picture("log hut, winter night", seed=1)
        ids["ramen"], ramen_job = await world.picture("a bowl of ramen", seed=2)
        ids["upscale"], _ = await world.picture(
            "log hut, winter night", seed=3, parent=hut_job, kind=JobKind.UPSCALE
        )
        await _embed(session, {hut_job: "log hut, winter night", ramen_job: "a bowl of ramen"})
    yield {"ids": ids, "root": root, "url": fresh_vector_db_url}
    await engine.dispose()


async def _embed(session: AsyncSession, prompts: dict[Any, str]) -> None:
    vectors = embeddings.embed(list(prompts.values()))
    await gallery_search.store_embeddings(session=session, vectors=dict(zip(prompts, vectors, strict=True)))


@pytest.fixture
async def web(seeded: dict[str, Any], fake: FakeDiscord, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **fake.oauth_env(f"{base}/auth/callback"),
        "DATABASE_URL": seeded["url"],
        "IMAGE_STORE": f"file://{seeded['root']}",
        "IMAGINARIUM_DATA_DIR": str(tmp_path / "data"),
        "WEB_BASE_URL": base,
        "WEB_SECRET": "browser-test-secret-" + "y" * 32,
    }
    async with web_process(env, port, tmp_path / "web.log") as url:
        yield url


_in_browser = in_browser


async def test_browse_search_by_meaning_open_lineage_log_in_and_like(
    browser: Any, web: str, seeded: dict[str, Any], fake: FakeDiscord
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ids = seeded["ids"]

    def browse() -> tuple[list[str], bool]:
        browser.get(web + "/")
        tiles = [tile.get_attribute("data-image") for tile in browser.find_elements(By.CSS_SELECTOR, ".tile")]
        loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0);"
        deadline = time.monotonic() + 10
        while not browser.execute_script(loaded) and time.monotonic() < deadline:
            time.sleep(0.1)
        return tiles, bool(browser.execute_script(loaded))

    shown, thumbnails = await _in_browser(browse)
    assert str(ids["hut"]) in shown and str(ids["ramen"]) in shown and thumbnails

    def search() -> list[str]:
        box = browser.find_element(By.ID, "search-box")
        box.send_keys("a cosy cabin in snow", Keys.ENTER)
        browser.find_element(By.CSS_SELECTOR, "h1")
        return [tile.get_attribute("data-image") for tile in browser.find_elements(By.CSS_SELECTOR, ".tile")]

    found = await _in_browser(search)
    assert str(ids["hut"]) in found and str(ids["ramen"]) not in found

    def open_image() -> tuple[str, str, bool]:
        browser.find_element(By.CSS_SELECTOR, f'.tile[data-image="{ids["hut"]}"] a').click()
        recipe = browser.find_element(By.ID, "recipe").text
        lineage = browser.find_element(By.ID, "lineage").text
        loaded = browser.execute_script(
            "const i = document.getElementById('picture'); return i.complete && i.naturalWidth > 0;"
        )
        return recipe, lineage, bool(loaded)

    recipe, lineage, loaded = await _in_browser(open_image)
    assert recipe.startswith("log hut, winter night") and "upscale" in lineage and loaded

    def log_in() -> str:
        browser.find_element(By.ID, "login").click()
        browser.find_element(By.ID, "authorize-alice").click()
        return str(browser.find_element(By.ID, "who").text)

    assert (await _in_browser(log_in)).lower() == "alice"

    def like() -> str:
        browser.get(f"{web}/i/{ids['hut']}")
        browser.find_element(By.ID, "like").click()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if browser.find_element(By.ID, "like").get_attribute("aria-pressed") == "true":
                break
            time.sleep(0.05)
        return str(browser.find_element(By.ID, "likes").text)

    assert await _in_browser(like) == "1"
    engine = create_engine(seeded["url"])
    try:
        async with create_session_factory(engine)() as session:
            assert await repo.count_likes(session=session, image_id=ids["hut"]) == 1
    finally:
        await engine.dispose()
    if os.environ.get("IMAGINARIUM_SCREENSHOT"):
        await _in_browser(
            lambda: (browser.get(web + "/"), browser.save_screenshot(os.environ["IMAGINARIUM_SCREENSHOT"]))
        )
