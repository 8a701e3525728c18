"""The web gallery in this process (httpx over ASGI) on the test database, real pictures in a
local store, and logins through the fake Discord's OAuth2."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import prompt as grammar
from core.settings import load_settings
from core.spec import JobKind, Lane
from core.store import LocalImageReader
from core.thumbnails import thumbnail_webp
from db import repositories as repo
from db.models import Guild, User
from tests.bot.conftest import next_id, png, store_image
from tests.fake_discord import FakeDiscord, make_guild
from web.app import create_app
from web.config import WebConfig

BASE = "http://testserver"


@dataclass
class Gallery:
    """Pictures made the way the worker records them (files, thumbnails, rows)."""

    session: AsyncSession
    root: Path
    guild: Guild
    users: dict[str, User] = field(default_factory=dict)

    async def user(self, name: str, discord_id: int | None = None) -> User:
        if name not in self.users:
            self.users[name] = await repo.upsert_user(
                session=self.session, discord_id=discord_id or next_id()
            )
        return self.users[name]

    async def picture(
        self,
        prompt: str,
        *,
        owner: str = "bob",
        private: bool = False,
        nsfw: bool = False,
        public: bool = True,
        guild: Guild | None = None,
        parent: uuid.UUID | None = None,
        kind: JobKind = JobKind.IMAGINE,
        seed: int = 1,
    ) -> tuple[int, uuid.UUID]:
        """(image id, job id) of a done one-image job."""
        user = await self.user(owner)
        new = await repo.create_job(
            session=self.session,
            user_id=user.id,
            guild_id=(guild or self.guild).id,
            spec=grammar.parse(prompt),
            model="tiny",
            lane=Lane.FAST,
            cost=0,
            private=private,
            kind=kind,
            parent_id=parent,
            parent_index=0 if parent else None,
        )
        data = png((96, 64), seed=seed)
        key = store_image(self.root, data)
        thumb = thumbnail_webp(data)
        thumb_key = hashlib.sha256(thumb).hexdigest() + ".webp"
        path = LocalImageReader(self.root).path_of(thumb_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(thumb)
        await repo.claim_job(session=self.session, job_id=new.job.id)
        await repo.finish_job(
            session=self.session,
            job_id=new.job.id,
            images=[
                repo.NewImage(
                    index=0,
                    seed=seed,
                    storage_key=key,
                    width=96,
                    height=64,
                    sha256=hashlib.sha256(data).hexdigest(),
                    nsfw=nsfw,
                    public=public,
                    thumbnail_key=thumb_key,
                )
            ],
        )
        job = await repo.get_job(session=self.session, job_id=new.job.id, with_images=True)
        assert job is not None
        return job.images[0].id, job.id


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord([make_guild(members=("alice", "bob", "carol"))]) as server:
        yield server


@pytest.fixture
async def gallery(session: AsyncSession, tmp_path: Path, fake: FakeDiscord) -> Gallery:
    guild = await repo.upsert_guild(session=session, discord_id=fake.default_guild.id)
    found = Gallery(session, tmp_path / "images", guild)
    for name in ("alice", "bob", "carol"):
        await found.user(name, fake.user(name).id)
    return found


@pytest.fixture
async def web(
    session_factory: async_sessionmaker[AsyncSession], gallery: Gallery, fake: FakeDiscord, tmp_path: Path
) -> AsyncIterator[Web]:
    env = fake.oauth_env(f"{BASE}/auth/callback")
    settings = load_settings(
        web_base_url=BASE,
        web_secret="test-secret-" + "x" * 32,
        discord_client_id=env["DISCORD_CLIENT_ID"],
        discord_client_secret=env["DISCORD_CLIENT_SECRET"],
        discord_oauth_url=env["DISCORD_OAUTH_URL"],
        discord_api_base=env["DISCORD_API_BASE"],
        data_dir=tmp_path / "data",
    )
    app = create_app(WebConfig.from_settings(settings), session_factory, LocalImageReader(gallery.root))
    found = Web(app, fake)
    yield found
    for client in found.clients:
        await client.aclose()


@dataclass
class Web:
    app: Any
    fake: FakeDiscord
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        """A browser of the gallery (closed after the test)."""
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)
        self.clients.append(client)
        return client

    async def logged_in(self, name: str) -> httpx.AsyncClient:
        """A client logged in as fake Discord member ``name`` through the OAuth2 flow."""
        client = self.client()
        start = await client.get("/auth/login?next=/me")
        assert start.status_code == 302
        authorize = start.headers["location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        async with httpx.AsyncClient() as browser:
            page = await browser.get(authorize)
            assert page.status_code == 200, page.text
            consent = await browser.post(
                f"{self.fake.base_url}/oauth2/authorize",
                data={**query, "user_id": str(self.fake.user(name).id)},
            )
        assert consent.status_code == 302
        back = consent.headers["location"]
        assert back.startswith(f"{BASE}/auth/callback?")
        done = await client.get(back.removeprefix(BASE))
        assert done.status_code == 303 and done.headers["location"] == "/me", done.text
        return client


async def set_private_mode(session: AsyncSession, user: User) -> None:
    await session.execute(update(User).where(User.id == user.id).values(settings={"private": True}))
