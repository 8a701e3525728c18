"""The server gallery: what it shows (and never shows), search, likes, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import gallery
from bot.services.errors import RefusalReason, Refused
from bot.services.gallery import GalleryFilter, GalleryMode
from core import prompt as grammar
from core.spec import Lane
from db import repositories as repo
from db.models import Guild, Image, User
from tests.bot.conftest import next_id, png, store_image
from tests.bot.discord_harness import Harness, running_bot
from tests.fake_discord import FakeMessage


@dataclass
class World:
    """A server with a member; :meth:`image` makes a finished job and returns its first image's id."""

    session: AsyncSession
    guild: Guild
    user: User

    @classmethod
    async def new(cls, session: AsyncSession) -> World:
        """A new server with one member, in ``session``."""
        guild = await repo.upsert_guild(session=session, discord_id=next_id())
        return cls(session, guild, await repo.upsert_user(session=session, discord_id=next_id()))

    async def image(
        self,
        prompt: str,
        *,
        user: User | None = None,
        guild: Guild | None = None,
        model: str = "tiny",
        public: bool = True,
        nsfw: bool = False,
        private: bool = False,
        finish: bool = True,
    ) -> int:
        spec = grammar.parse(prompt)
        new = await repo.create_job(
            session=self.session,
            user_id=(user or self.user).id,
            guild_id=(guild or self.guild).id,
            spec=spec,
            model=model,
            lane=Lane.FAST,
            cost=0,
            private=private,
        )
        job_id = new.job.id
        if not finish:
            return -1
        await repo.claim_job(session=self.session, job_id=job_id)
        await repo.finish_job(
            session=self.session,
            job_id=job_id,
            images=[
                repo.NewImage(
                    index=0,
                    seed=new.job.seed,
                    storage_key=f"{job_id}/0.png",
                    width=64,
                    height=64,
                    sha256="0" * 64,
                    nsfw=nsfw,
                    public=public,
                )
            ],
        )
        [image] = (await repo.get_job(session=self.session, job_id=job_id, with_images=True)).images  # type: ignore[union-attr]
        return image.id

    async def member(self) -> User:
        return await repo.upsert_user(session=self.session, discord_id=next_id())

    async def page(
        self, filter: GalleryFilter, *, page: int = 0, per_page: int = 10, viewer: int | None = None
    ) -> gallery.GalleryPage:
        return await gallery.gallery_page(
            session=self.session,
            guild_discord_id=self.guild.discord_id,
            filter=filter,
            page=page,
            per_page=per_page,
            viewer_discord_id=viewer,
        )

    async def like(self, fan: User, image_id: int, liked: bool = True) -> int:
        return await gallery.set_like(
            session=self.session,
            guild_discord_id=self.guild.discord_id,
            viewer_discord_id=fan.discord_id,
            image_id=image_id,
            liked=liked,
        )

    async def shown(self, filter: GalleryFilter) -> list[int]:
        return [e.image_id for e in (await self.page(filter)).entries]


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await World.new(session)


RECENT = GalleryFilter(GalleryMode.RECENT)
TOP = GalleryFilter(GalleryMode.TOP)


async def test_only_published_safe_finished_images_of_this_server_are_shown(world: World) -> None:
    shown = await world.image("a lighthouse at dusk")
    await world.image("an unpublished sketch", public=False)
    await world.image("a flagged image", nsfw=True)
    await world.image("a private job", private=True)
    await world.image("still rendering", finish=False)
    other_server = await repo.upsert_guild(session=world.session, discord_id=next_id())
    await world.image("made elsewhere", guild=other_server)
    shy = await world.member()
    hidden_later = await world.image("before private mode", user=shy)
    await repo.update_user_settings(session=world.session, user_id=shy.id, changes={"private": True})

    assert await world.shown(RECENT) == [shown]
    assert await world.shown(TOP) == [shown]
    assert hidden_later not in await world.shown(GalleryFilter(GalleryMode.USER, shy.discord_id))


async def test_recent_shows_the_newest_first_with_the_full_recipe(world: World) -> None:
    first = await world.image("a red fox --ar 16:9 --stylize 250")
    second = await world.image("a blue whale --no boats")

    page = await world.page(RECENT)

    assert [e.image_id for e in page.entries] == [second, first]
    fox = page.entries[1]
    assert fox.recipe.startswith("a red fox --ar 16:9 --seed ")
    assert "--stylize 250" in fox.recipe
    assert fox.owner_discord_id == world.user.discord_id and fox.model == "tiny"


async def test_search_finds_prompts_by_their_words(world: World) -> None:
    foxes = await world.image("two foxes sleeping in the snow")
    await world.image("a lighthouse at dusk")

    found = await gallery.open_filter(
        session=world.session, mode=GalleryMode.SEARCH, text="  sleeping   fox "
    )
    page = await world.page(found)

    assert [e.image_id for e in page.entries] == [foxes]
    assert not page.similar and found.text == "sleeping fox"
    nothing = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="submarine")
    assert (await world.page(nothing)).entries == ()


async def test_search_falls_back_to_similar_words_when_no_word_matches(world: World) -> None:
    lighthouse = await world.image("a lighthouse at dusk")
    await world.image("a bowl of ramen")

    typo = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="lighthuose")
    page = await world.page(typo)

    assert [e.image_id for e in page.entries] == [lighthouse]
    assert page.similar


async def test_top_orders_by_likes(world: World) -> None:
    little = await world.image("a little liked cat")
    most = await world.image("a well liked cat")
    unloved = await world.image("an unloved cat")
    fans = [await world.member() for _ in range(3)]
    for fan in fans:
        await world.like(fan, most)
    await world.like(fans[0], little)

    page = await world.page(TOP, viewer=fans[1].discord_id)

    assert [(e.image_id, e.likes, e.liked) for e in page.entries] == [
        (most, 3, True),
        (little, 1, False),
        (unloved, 0, False),
    ]


async def test_by_user_and_by_model(world: World) -> None:
    mine = await world.image("mine")
    other = await world.member()
    theirs = await world.image("theirs", user=other, model="turbo")

    by_other = GalleryFilter(GalleryMode.USER, other.discord_id)
    by_turbo = await gallery.open_filter(session=world.session, mode=GalleryMode.MODEL, text="Turbo")

    assert await world.shown(by_other) == [theirs]
    assert await world.shown(by_turbo) == [theirs]
    assert await world.shown(GalleryFilter(GalleryMode.USER, world.user.discord_id)) == [mine]


async def test_pages_of_one_image_and_a_page_past_the_end_shows_the_last(world: World) -> None:
    ids = [await world.image(f"picture number {n}") for n in range(3)]

    first = await world.page(RECENT, per_page=1)
    last = await world.page(RECENT, per_page=1, page=2)
    beyond = await world.page(RECENT, per_page=1, page=99)

    assert (first.total, first.pages, first.has_previous, first.has_next) == (3, 3, False, True)
    assert [e.image_id for e in first.entries] == [ids[2]]
    assert (last.has_previous, last.has_next, [e.image_id for e in last.entries]) == (True, False, [ids[0]])
    assert beyond.page == 2 and beyond.entries == last.entries


async def test_a_stored_query_comes_back_from_its_id(world: World) -> None:
    first = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="red fox")
    again = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="red   fox")

    assert again.arg == first.arg
    assert await gallery.load_filter(session=world.session, code="s", arg=first.arg) == first
    with pytest.raises(Refused, match="no longer exists"):
        await gallery.load_filter(session=world.session, code="m", arg=first.arg)


async def test_likes_are_idempotent_and_only_for_gallery_images(world: World) -> None:
    image = await world.image("a liked lighthouse")
    hidden = await world.image("a flagged one", nsfw=True)
    fan = await world.member()

    counts = [await world.like(fan, image, liked) for liked in (True, True, False, False)]

    assert counts == [1, 1, 0, 0]
    with pytest.raises(Refused, match="no longer in this server's gallery") as refused:
        await world.like(fan, hidden)
    assert refused.value.reason is RefusalReason.NOT_FOUND


async def test_use_this_prompt_keeps_the_flags_and_drops_the_seed(world: World) -> None:
    image = await world.image("a red fox --ar 3:2 --seed 77 --no snow --relax")

    text = await gallery.reusable_prompt(
        session=world.session, guild_discord_id=world.guild.discord_id, image_id=image
    )

    assert text == "a red fox --ar 3:2 --no snow"


async def test_an_unpublished_image_leaves_the_gallery_and_its_prompt_with_it(world: World) -> None:
    image = await world.image("soon gone")
    await world.session.execute(update(Image).where(Image.id == image).values(public=False))

    assert await world.shown(RECENT) == []
    with pytest.raises(Refused):
        await gallery.reusable_prompt(
            session=world.session, guild_discord_id=world.guild.discord_id, image_id=image
        )


async def test_a_server_with_the_gallery_off_refuses(world: World) -> None:
    await repo.update_guild_policy(session=world.session, guild_id=world.guild.id, gallery_enabled=False)

    with pytest.raises(Refused, match="turned the gallery off"):
        await world.page(RECENT)


async def test_a_server_without_images_has_an_empty_gallery(session: AsyncSession) -> None:
    page = await gallery.gallery_page(session=session, guild_discord_id=next_id(), filter=RECENT)
    assert (page.entries, page.total, page.pages) == ((), 0, 1)


# --------------------------------------------------------------------------- through Discord


@pytest.fixture
async def discord(fresh_db_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_bot(fresh_db_url, redis_url, tmp_path) as harness:
        yield harness


async def _publish(h: Harness, owner: str, prompts: list[str]) -> list[int]:
    """Finished, published one-image jobs of ``owner`` in the fake's server, oldest first."""
    ids = []
    async with h.sessions() as session, session.begin():
        guild = await repo.upsert_guild(session=session, discord_id=h.fake.default_guild.id)
        user = await repo.upsert_user(session=session, discord_id=h.fake.user(owner).id)
        for n, text in enumerate(prompts):
            spec = grammar.parse(text)
            new = await repo.create_job(
                session=session,
                user_id=user.id,
                guild_id=guild.id,
                spec=spec,
                model="tiny",
                lane=Lane.FAST,
                cost=0,
            )
            key = store_image(h.images, png((64, 64), seed=n))
            await repo.claim_job(session=session, job_id=new.job.id)
            [image] = await repo.add_images(
                session=session,
                job_id=new.job.id,
                images=[
                    repo.NewImage(index=0, seed=7, storage_key=key, width=64, height=64, sha256="0" * 64)
                ],
            )
            await repo.finish_job(session=session, job_id=new.job.id, images=[])
            ids.append(image.id)
    return ids


def _recipe(message: FakeMessage) -> str:
    return str(message.embeds[0]["description"]) if message.embeds else ""


async def _edited(h: Harness, message: FakeMessage, edits_before: int) -> FakeMessage:
    await h.fake.wait_for(lambda: len(message.history) > edits_before, what="the gallery page to change")
    return message


async def test_gallery_pages_with_buttons_that_survive_a_restart(discord: Harness) -> None:
    h = discord
    fox, whale, frog = await _publish(h, "bob", ["a red fox --ar 3:2", "a blue whale", "a green frog"])

    page = await h.answer(await h.fake.slash("gallery recent", user="alice"))

    assert page.ephemeral and page.content.endswith("Most recent · 1 of 3")
    assert _recipe(page) == "a green frog --seed 7"
    assert [a.filename for a in page.attachments] == [f"gallery_{frog}.png"]
    assert page.embeds[0]["image"]["url"].endswith(f"gallery_{frog}.png")
    assert page.component("gal:v1:p:r:0:0").disabled
    # ▶ carries the image shown: the next page is the images after it (keyset).
    assert page.custom_ids == [
        "gal:v1:p:r:0:0",
        f"gal:v1:p:r:0:1:a{frog}",
        f"gal:v1:lk:r:0:0:{frog}",
        f"gal:v1:use:{frog}",
    ]

    edits = len(page.history)
    await h.fake.click(page, f"gal:v1:p:r:0:1:a{frog}", user="alice")
    await _edited(h, page, edits)
    assert page.content.endswith("2 of 3") and _recipe(page).startswith("a blue whale")
    assert [a.filename for a in page.attachments] == [f"gallery_{whale}.png"]

    await h.stop()
    await h.start()
    edits = len(page.history)
    await h.fake.click(page, f"gal:v1:p:r:0:2:a{whale}", user="alice")
    await _edited(h, page, edits)
    assert page.content.endswith("3 of 3") and _recipe(page) == "a red fox --ar 3:2 --seed 7"
    assert page.component(f"gal:v1:p:r:0:3:a{fox}").disabled
    assert fox in {int(cid.rsplit(":", 1)[1]) for cid in page.custom_ids if cid.startswith("gal:v1:use:")}
    # ◀ from page 3 goes back by keyset too: the image before the fox is the whale.
    edits = len(page.history)
    await h.fake.click(page, f"gal:v1:p:r:0:1:b{fox}", user="alice")
    await _edited(h, page, edits)
    assert page.content.endswith("2 of 3") and _recipe(page).startswith("a blue whale")


async def test_liking_from_the_gallery_counts_once_and_top_follows_likes(discord: Harness) -> None:
    h = discord
    older, newer = await _publish(h, "bob", ["a quiet harbour", "a busy market"])
    page = await h.answer(await h.fake.slash("gallery recent", user="alice"))
    assert page.component(f"gal:v1:lk:r:0:0:{newer}").label == "❤ 0"

    # The second page's image gets alice's like; a stale second click changes nothing.
    edits = len(page.history)
    await h.fake.click(page, f"gal:v1:p:r:0:1:a{newer}", user="alice")
    await _edited(h, page, edits)
    edits = len(page.history)
    await h.fake.click(page, f"gal:v1:lk:r:0:1:{older}", user="alice")
    await _edited(h, page, edits)

    assert page.component(f"gal:v1:ul:r:0:1:{older}").label == "Unlike (1)"
    assert "❤ 1" in str(page.embeds[0]["fields"])
    top = await h.answer(await h.fake.slash("gallery top", user="bob"))
    assert _recipe(top).startswith("a quiet harbour")
    assert top.component(f"gal:v1:lk:t:0:0:{older}").label == "❤ 1"


async def test_use_this_prompt_opens_a_prefilled_form_that_queues_a_job(discord: Harness) -> None:
    h = discord
    [image] = await _publish(h, "bob", ["a lighthouse at dusk --ar 16:9 --no fog"])
    await h.grant("alice", 3)
    page = await h.answer(await h.fake.slash("gallery search", {"words": "lighthouses"}, user="alice"))
    assert page.content.endswith("Search: “lighthouses” · 1 of 1")

    opened = await h.fake.click(page, f"gal:v1:use:{image}", user="alice")
    form = await h.fake.wait_for(lambda: opened.modal, what="the prompt form")
    [row] = form["components"]
    assert row["components"][0]["value"] == "a lighthouse at dusk --ar 16:9 --no fog"

    submitted = await h.fake.submit_modal(opened, {"prompt": "a lighthouse at dawn --ar 16:9"}, user="alice")
    ack = await h.fake.wait_for(
        lambda: (
            submitted.original if submitted.original is not None and not submitted.original.loading else None
        ),
        what="the queued acknowledgement",
    )

    assert not ack.ephemeral and "a lighthouse at dawn" in ack.content
    async with h.sessions() as session:
        job = await repo.get_job_by_interaction(session=session, interaction_id=submitted.id)
        alice = await repo.upsert_user(session=session, discord_id=h.fake.user("alice").id)
    assert job is not None and job.prompt == "a lighthouse at dawn" and alice.balance == 2


async def test_a_gallery_turned_off_is_explained(discord: Harness) -> None:
    h = discord
    async with h.sessions() as session, session.begin():
        guild = await repo.upsert_guild(session=session, discord_id=h.fake.default_guild.id)
        await repo.update_guild_policy(session=session, guild_id=guild.id, gallery_enabled=False)

    answer = await h.answer(await h.fake.slash("gallery top", user="alice"))

    assert answer.ephemeral and answer.content == "This server's admins have turned the gallery off."


async def test_like_counts_are_kept_on_the_image_and_a_page_counts_up_to_a_cap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.repositories import gallery as gallery_repo

    liked = await world.image("a liked lighthouse")
    fans = [await world.member() for _ in range(2)]
    for fan in fans:
        await world.like(fan, liked)
    await world.like(fans[0], liked, liked=False)
    assert await gallery_repo.count_likes(session=world.session, image_id=liked) == 1  # the trigger's count

    for n in range(3):
        await world.image(f"lighthouse number {n}")
    monkeypatch.setattr(gallery_repo, "COUNT_CAP", 2)
    page = await world.page(RECENT, per_page=1)
    assert (page.total, page.pages, page.more) == (3, 2, True)  # "1 of 2+"
