"""Make ``docs/web-gallery.png``: the web gallery with pictures the shipped ``shapes`` model drew.

Run ``.venv/bin/python docs/gallery_screenshot.py`` (needs the system Postgres of the tests,
chromium and chromedriver). It creates a database of its own, renders a dozen prompts with
the built-in model (CPU, about a minute), records them the way the worker does, serves
``imaginarium web`` on it, and saves a headless chromium's view of the front page.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a red circle on a blue background", "a yellow triangle on a green background",
    "a white square on a black background", "a blue circle on a yellow background",
    "a green triangle on a purple background", "a red square on a white background",
    "an orange circle on a grey background", "a purple square on an orange background",
    "a black triangle on a white background", "a yellow circle on a red background",
    "a blue square on a green background", "a white triangle on a blue background",
]
DATABASE = "imaginarium_screenshot"


def _render() -> list[bytes]:
    import io

    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(ROOT / "gpu_worker" / "builtin" / "shapes"))
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPTS, num_inference_steps=25, generator=torch.Generator().manual_seed(7)).images
    out = []
    for image in images:
        buffer = io.BytesIO()
        image.resize((256, 256)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


async def _record(url: str, store: Path, pictures: list[bytes]) -> None:
    from core import prompt as grammar
    from core.spec import Lane
    from core.store import LocalImageReader
    from core.thumbnails import thumbnail_webp
    from db import repositories as repo
    from db.session import create_engine, create_session_factory

    engine = create_engine(url)
    reader = LocalImageReader(store)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            guild = await repo.upsert_guild(session=session, discord_id=900_000_000_000_000_001)
            members = [await repo.upsert_user(session=session, discord_id=800_000_000_000_000_000 + n) for n in range(4)]
            for n, (prompt, data) in enumerate(zip(PROMPTS, pictures, strict=True)):
                keys = []
                for blob, suffix in ((data, ".png"), (thumbnail_webp(data), ".webp")):
                    key = hashlib.sha256(blob).hexdigest() + suffix
                    path = reader.path_of(key)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
                    keys.append(key)
                new = await repo.create_job(
                    session=session, user_id=members[n % 4].id, guild_id=guild.id,
                    spec=grammar.parse(f"{prompt} --seed {7 + n}"), model="shapes", lane=Lane.FAST, cost=0,
                )
                await repo.claim_job(session=session, job_id=new.job.id)
                await repo.finish_job(
                    session=session, job_id=new.job.id,
                    images=[repo.NewImage(index=0, seed=7 + n, storage_key=keys[0], width=256, height=256,
                                          sha256=keys[0][:64], thumbnail_key=keys[1])],
                )
    finally:
        await engine.dispose()


async def main() -> int:
    from sqlalchemy.engine import make_url

    from db.migrate import drop_database, ensure_database, upgrade_async
    from tests.web.browser import chromium, free_port, in_browser, web_process

    base = make_url(os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    url = base.set(database=DATABASE).render_as_string(hide_password=False)
    await drop_database(url)
    await ensure_database(url)
    await upgrade_async(url)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "images"
        await _record(url, store, await asyncio.to_thread(_render))
        port = free_port()
        env = {"DATABASE_URL": url, "IMAGE_STORE": f"file://{store}", "IMAGINARIUM_DATA_DIR": str(Path(tmp) / "data"),
               "WEB_BASE_URL": f"http://127.0.0.1:{port}"}
        async with web_process(env, port, Path(tmp) / "web.log") as web:
            with chromium() as browser:
                def shoot() -> None:
                    browser.set_window_size(1280, 820)
                    browser.get(web + "/")
                    loaded = "return [...document.images].every(i => i.complete && i.naturalWidth > 0);"
                    for _ in range(100):
                        if browser.execute_script(loaded):
                            break
                        time.sleep(0.1)
                    browser.save_screenshot(str(ROOT / "docs" / "web-gallery.png"))

                await in_browser(shoot)
    await drop_database(url)
    print("wrote docs/web-gallery.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
