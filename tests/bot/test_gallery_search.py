"""Gallery paging by keyset, broad and misspelt searches, and search by meaning (pgvector)."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import gallery
from bot.services.gallery import GalleryFilter, GalleryMode
from bot.views.gallery import NAV_TEMPLATE, nav_id
from db import embeddings
from db import repositories as repo
from db.repositories import gallery_search
from db.repositories.gallery import Anchor
from tests.bot.conftest import next_id
from tests.bot.test_gallery import World


@pytest.fixture
async def world(session: AsyncSession) -> World:
    return await World.new(session)


RECENT = GalleryFilter(GalleryMode.RECENT)
TOP = GalleryFilter(GalleryMode.TOP)


async def _ids(
    world: World, filter: GalleryFilter, **kwargs: object
) -> tuple[list[int], gallery.GalleryPage]:
    page = await gallery.gallery_page(
        session=world.session,
        guild_discord_id=world.guild.discord_id,
        filter=filter,
        **kwargs,  # type: ignore[arg-type]
    )
    return [e.image_id for e in page.entries], page


async def test_keyset_pages_walk_the_same_order_as_numbered_pages_both_ways(world: World) -> None:
    made = [await world.image(f"picture number {n}") for n in range(7)]
    newest_first = made[::-1]
    fans = [await world.member() for _ in range(3)]
    for fan in fans:
        await world.like(fan, made[2])
    await world.like(fans[0], made[5])

    for filter, order in (
        (RECENT, newest_first),
        (TOP, [made[2], made[5], *[i for i in newest_first if i not in (made[2], made[5])]]),
    ):
        seen, page_no, anchor = [], 0, None
        while True:
            ids, page = await _ids(world, filter, page=page_no, per_page=3, anchor=anchor)
            seen += ids
            if not page.has_next:
                break
            page_no, anchor = page_no + 1, Anchor(ids[-1])
        assert seen == order and page.page == 2 and page.pages == 3
        # And back from the last page, by keyset, to the first.
        back, _ = await _ids(world, filter, page=1, per_page=3, anchor=Anchor(ids[0], backwards=True))
        assert back == order[3:6]
        first, page = await _ids(world, filter, page=0, per_page=3, anchor=Anchor(back[0], backwards=True))
        assert first == order[:3] and page.page == 0 and not page.has_previous and page.has_next


async def test_an_anchor_that_left_the_gallery_falls_back_to_the_page_number(world: World) -> None:
    made = [await world.image(f"scene {n}") for n in range(4)]
    gone = made[2]
    await world.session.execute(text("UPDATE images SET public = false WHERE id = :i"), {"i": gone})
    ids, page = await _ids(world, RECENT, page=1, per_page=1, anchor=Anchor(gone))
    assert ids == [made[1]] and page.page == 1


def test_paging_ids_from_before_anchors_still_parse() -> None:
    # Messages sent before keyset paging carry the page number alone.
    old = re.fullmatch(NAV_TEMPLATE, "gal:v1:p:r:0:4")
    assert old is not None and old["anchor"] is None and old["page"] == "4"
    new = re.fullmatch(NAV_TEMPLATE, nav_id(RECENT, 5, Anchor(123456789, backwards=True)))
    assert new is not None and (new["dir"], new["anchor"], new["page"]) == ("b", "123456789", "5")
    assert len(nav_id(GalleryFilter(GalleryMode.USER, 2**63 - 1), 99_999, Anchor(2**63 - 1))) <= 100


async def test_a_broad_search_shows_its_matches_newest_first_by_keyset(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gallery_search, "TEXT_DEPTH", 2)
    cats = [await world.image(f"a cat, take {n}") for n in range(4)]
    await world.image("a dog")
    search = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="cat")

    ids, page = await _ids(world, search, per_page=3)
    assert ids == cats[::-1][:3] and page.has_next and page.total == 4
    rest, page = await _ids(world, search, page=1, per_page=3, anchor=Anchor(ids[-1]))
    assert rest == [cats[0]] and not page.has_next


async def test_a_misspelt_search_says_which_words_it_searched_instead(world: World) -> None:
    lighthouse = await world.image("a lighthouse at dusk")
    await world.image("a bowl of ramen")

    typo = await gallery.open_filter(
        session=world.session, mode=GalleryMode.SEARCH, text="lighthuose at dusk"
    )
    ids, page = await _ids(world, typo)
    assert ids == [lighthouse] and page.corrected == "lighthouse at dusk" and page.similar
    # A word no published prompt has, nor anything like it, is left out.
    typo = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="lighthuose xqzvw")
    ids, page = await _ids(world, typo)
    assert ids == [lighthouse] and page.corrected == "lighthouse"
    # Words only private or unpublished prompts have are never offered.
    await world.image("a zanzibar sunset", private=True)
    await world.image("a quokka portrait", public=False)
    for words in ("zanzibat", "quokkka"):
        hidden = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text=words)
        ids, page = await _ids(world, hidden)
        assert ids == [] and page.corrected is None


async def test_without_pgvector_search_is_full_text_with_one_warning(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gallery_search, "_warned", False)
    with caplog.at_level(logging.WARNING):
        assert not await gallery_search.warn_if_search_is_text_only(session=world.session)
        assert not await gallery_search.warn_if_search_is_text_only(session=world.session)
    warnings = [r for r in caplog.records if "search by meaning is off" in r.getMessage()]
    assert len(warnings) == 1 and "pgvector" in warnings[0].getMessage()
    fox = await world.image("a red fox")
    search = await gallery.open_filter(session=world.session, mode=GalleryMode.SEARCH, text="fox")
    assert (await _ids(world, search))[0] == [fox]


# --------------------------------------------------------------------------- by meaning (pgvector)


@pytest.fixture
async def vworld(vector_session: AsyncSession) -> World:
    return await World.new(vector_session)


async def _embedded(world: World, prompt: str, **kwargs: object) -> int:
    image_id = await world.image(prompt, **kwargs)  # type: ignore[arg-type]
    job_id = await world.session.scalar(text("SELECT job_id FROM images WHERE id = :i"), {"i": image_id})
    await gallery_search.store_embeddings(
        session=world.session, vectors={job_id: embeddings.embed([prompt])[0]}
    )
    return image_id


@pytest.mark.slow
async def test_search_by_meaning_finds_prompts_without_the_words(vworld: World) -> None:
    cabin = await _embedded(vworld, "log hut, winter night")
    await _embedded(vworld, "a bowl of ramen on a wooden table")
    await _embedded(vworld, "a red sports car on a race track")
    assert await gallery_search.warn_if_search_is_text_only(session=vworld.session)

    search = await gallery.open_filter(
        session=vworld.session, mode=GalleryMode.SEARCH, text="a cosy cabin in snow"
    )
    ids, page = await _ids(vworld, search)
    assert ids == [cabin] and page.corrected is None
    nothing = await gallery.open_filter(
        session=vworld.session, mode=GalleryMode.SEARCH, text="submarine sonar"
    )
    assert (await _ids(vworld, nothing))[0] == []


@pytest.mark.slow
async def test_exact_words_and_meaning_rank_together(vworld: World) -> None:
    both = await _embedded(vworld, "a cabin in the snow at night")
    words = await _embedded(vworld, "airline cabin crew, snow on the runway")
    hut = await _embedded(vworld, "log hut, winter night")
    storm = await _embedded(vworld, "a wooden hut in a snowstorm")
    await _embedded(vworld, "a bowl of ramen")
    await _embedded(vworld, "a red sports car on a race track")

    search = await gallery.open_filter(
        session=vworld.session, mode=GalleryMode.SEARCH, text="cabin in the snow"
    )
    ids, page = await _ids(vworld, search, per_page=10)
    # In both lists first, then what only its meaning found; nothing unrelated.
    assert set(ids[:2]) == {both, words} and set(ids[2:]) == {hut, storm} and page.total == 4


@pytest.mark.slow
async def test_private_and_unpublished_prompts_never_surface_by_meaning(vworld: World) -> None:
    await _embedded(vworld, "log hut, winter night", private=True)
    await _embedded(vworld, "a cabin under snow", public=False)
    await _embedded(vworld, "a snowy mountain chalet", nsfw=True)
    other = await repo.upsert_guild(session=vworld.session, discord_id=next_id())
    await _embedded(vworld, "a wooden cabin in a blizzard", guild=other)

    search = await gallery.open_filter(
        session=vworld.session, mode=GalleryMode.SEARCH, text="a cosy cabin in snow"
    )
    assert (await _ids(vworld, search))[0] == []


@pytest.mark.slow
async def test_the_worker_embeds_a_done_prompt_once(vector_db_url: str) -> None:
    from db.session import create_engine, create_session_factory
    from gpu_worker.search_index import index_prompt

    engine = create_engine(vector_db_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            w = await World.new(session)
            image_id = await w.image("a lighthouse in a storm")
            job_id = await session.scalar(text("SELECT job_id FROM images WHERE id = :i"), {"i": image_id})
        await index_prompt(sessions, job_id, "a lighthouse in a storm")
        await index_prompt(sessions, job_id, "a lighthouse in a storm")
        async with sessions() as session:
            stored = await session.scalar(
                text("SELECT count(*) FROM prompt_embeddings WHERE job_id = :j"), {"j": job_id}
            )
            todo = await gallery_search.prompts_to_embed(session=session, limit=10_000)
        assert stored == 1 and job_id not in {j for j, _ in todo}
    finally:
        async with sessions() as session, session.begin():
            await session.execute(text("DELETE FROM jobs WHERE id = :j"), {"j": job_id})
        await engine.dispose()


def test_the_numpy_encoder_matches_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = ["a cosy cabin in snow", "log hut, winter night", "", "ünïcödé ✨ " * 80]
    ours = embeddings.encoder().encode(texts)
    theirs = st.SentenceTransformer(str(embeddings.model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert abs(ours - theirs).max() < 1e-4
    assert float(ours[0] @ ours[1]) > gallery_search.MIN_SIMILARITY > float(ours[0] @ ours[2])


@pytest.mark.slow
async def test_index_prompts_embeds_what_was_made_before_pgvector(fresh_vector_db_url: str) -> None:
    from db.cli import _index_prompts
    from db.session import create_engine, create_session_factory

    engine = create_engine(fresh_vector_db_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            w = await World.new(session)
            for prompt in ("log hut, winter night", "a bowl of ramen", "a red sports car"):
                await w.image(prompt)
        assert await _index_prompts(fresh_vector_db_url, 2) == 3
        assert await _index_prompts(fresh_vector_db_url, 2) == 0  # nothing left to do
        async with sessions() as session:
            w.session = session
            search = await gallery.open_filter(
                session=session, mode=GalleryMode.SEARCH, text="a cosy cabin in snow"
            )
            ids, _ = await _ids(w, search)
        assert len(ids) == 1
    finally:
        await engine.dispose()
