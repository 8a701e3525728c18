"""A server's public gallery (which images show, in which order), likes and favorites."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    false,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from db.models import Favorite, GalleryLike, GalleryQuery, Guild, Image, Job, JobStatus, User
from db.repositories import gallery_search
from db.repositories.gallery_search import Embedder


async def like_image(*, session: AsyncSession, user_id: int, image_id: int) -> bool:
    """Like a public gallery image.

    Returns:
        True if the like is new; False if the user already liked it or the image is not
        public (private and NSFW images cannot be liked: they are not in the gallery).
    """
    source = select(literal(user_id), Image.id).where(Image.id == image_id, Image.public)
    stmt = (
        pg_insert(GalleryLike)
        .from_select(["user_id", "image_id"], source)
        .on_conflict_do_nothing()
        .returning(GalleryLike.image_id)
    )
    return (await session.execute(stmt)).first() is not None


async def unlike_image(*, session: AsyncSession, user_id: int, image_id: int) -> bool:
    """Take a like back; False if there was none."""
    stmt = (
        delete(GalleryLike)
        .where(GalleryLike.user_id == user_id, GalleryLike.image_id == image_id)
        .returning(GalleryLike.image_id)
    )
    return (await session.execute(stmt)).first() is not None


async def count_likes(*, session: AsyncSession, image_id: int) -> int:
    """How many users like the image (kept on the image by a trigger)."""
    return await session.scalar(select(Image.likes).where(Image.id == image_id)) or 0


async def favorite_image(*, session: AsyncSession, user_id: int, image_id: int) -> bool:
    """Save any image the user can see to their favorites; False if it already was."""
    stmt = (
        pg_insert(Favorite)
        .values(user_id=user_id, image_id=image_id)
        .on_conflict_do_nothing()
        .returning(Favorite.image_id)
    )
    return (await session.execute(stmt)).first() is not None


async def unfavorite_image(*, session: AsyncSession, user_id: int, image_id: int) -> bool:
    """Remove an image from the user's favorites; False if it was not there."""
    stmt = (
        delete(Favorite)
        .where(Favorite.user_id == user_id, Favorite.image_id == image_id)
        .returning(Favorite.image_id)
    )
    return (await session.execute(stmt)).first() is not None


# --------------------------------------------------------------------------- the public gallery

COUNT_CAP = 1_000
"""A page counts the images its filter finds up to this many and one more: an exact count
of a million rows on every page is what made the gallery slow; "1,000+" is as useful."""


@dataclass(frozen=True, slots=True)
class GalleryWhere:
    """Which of a server's gallery images a page shows; nothing set shows them all, newest first."""

    search: str | None = None
    """Words over the prompts: full-text, by meaning where embeddings exist, and the nearest
    known words when none matches (see :mod:`db.repositories.gallery_search`); the best
    ``TEXT_DEPTH + MEANING_DEPTH`` at most."""
    owner_discord_id: int | None = None
    model: str | None = None
    by_likes: bool = False
    """Most liked first."""
    since: datetime | None = None
    """Only images made since then (the web's top of the day or week)."""


@dataclass(frozen=True, slots=True)
class Anchor:
    """A keyset page: the images just after ``image_id`` in the page's order, or just before
    it (``backwards``). Pages found this way cost the same however deep they are."""

    image_id: int
    backwards: bool = False


class GalleryRow(NamedTuple):
    image: Image
    job: Job
    owner_discord_id: int
    likes: int
    liked: bool
    """Whether the viewer likes it."""


@dataclass(frozen=True, slots=True)
class GalleryRows:
    """One slice of a gallery."""

    rows: list[GalleryRow]
    total: int
    """How many images the filter finds, at most :data:`COUNT_CAP` + 1 ("1,000+")."""
    offset: int
    """Where the slice starts when it was asked by offset (clamped to the last page)."""
    has_more: bool
    """Whether images follow the slice (in the direction it was asked)."""
    corrected: str | None = None
    """The words searched instead when no prompt has the ones asked for (typos)."""

    @property
    def similar(self) -> bool:
        return self.corrected is not None


async def store_gallery_query(*, session: AsyncSession, mode: str, text: str) -> int:
    """The id of stored search words or a model name (made once, then reused)."""
    stmt = (
        pg_insert(GalleryQuery)
        .values(mode=mode, text=text)
        # A no-op update so that RETURNING gives the id of an existing row too.
        .on_conflict_do_update(index_elements=[GalleryQuery.mode, GalleryQuery.text], set_={"mode": mode})
        .returning(GalleryQuery.id)
    )
    return int((await session.execute(stmt)).scalar_one())


async def gallery_query_text(*, session: AsyncSession, query_id: int, mode: str) -> str | None:
    """The words or model name a stored query id stands for."""
    return await session.scalar(
        select(GalleryQuery.text).where(GalleryQuery.id == query_id, GalleryQuery.mode == mode)
    )


async def gallery_rows(
    *,
    session: AsyncSession,
    guild_id: int | None,
    where: GalleryWhere,
    limit: int,
    offset: int = 0,
    anchor: Anchor | None = None,
    viewer_discord_id: int | None = None,
    embed: Embedder | None = None,
) -> GalleryRows:
    """One slice of a server's gallery (``guild_id``), or of every server's whose gallery is
    on (``None``: the web gallery).

    Only what the gallery may show, whatever the filter: images published by their owner,
    of done jobs made in this server, never NSFW-flagged ones, never from private jobs, and
    never from users who have turned private mode on since.

    Browsing modes and broad searches page by ``anchor`` when given (keyset: as fast on page
    10,000 as on page 1) and by ``offset`` otherwise; an ``offset`` past the end is moved
    back to the last page. Other searches rank their matches
    (:func:`db.repositories.gallery_search.search_ids`, ``embed`` turning words into a
    vector for search by meaning) and page by ``offset``.
    """
    viewer = await _user_id(session, viewer_discord_id)
    # Short queries over a few indexed rows: parallel workers only add their start-up time.
    await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    corrected = None
    if where.search is not None:
        found = await gallery_search.search_ids(
            session=session, visible=lambda stmt: _visible(stmt, guild_id), words=where.search, embed=embed
        )
        corrected = found.corrected
        if found.ids is not None:
            total = len(found.ids)
            offset = min(max(offset, 0), max(total - 1, 0) // limit * limit)
            page_ids = found.ids[offset : offset + limit]
            stmt = _rows(guild_id, viewer).where(Image.id.in_(page_ids))
            by_id = {row[0].id: GalleryRow(*row) for row in (await session.execute(stmt)).all()}
            rows = [by_id[i] for i in page_ids if i in by_id]
            return GalleryRows(rows, total, offset, offset + limit < total, corrected)
        assert found.condition is not None
        condition = found.condition
    else:
        condition = _condition(where)
    names = ["likes", "created_at", "id"] if where.by_likes else ["created_at", "id"]
    keys: list[ColumnElement[Any]] = [getattr(Image, name) for name in names]
    total = await _count(session, guild_id, condition)
    stmt = _rows(guild_id, viewer).where(condition)
    if anchor is not None:
        # The anchor's own sort keys, read from its row (an alias: not the outer query's image).
        pinned = aliased(Image)
        at = [select(getattr(pinned, n)).where(pinned.id == anchor.image_id).scalar_subquery() for n in names]
        if anchor.backwards:
            stmt = stmt.where(tuple_(*keys) > tuple_(*at)).order_by(*(k.asc() for k in keys))
        else:
            stmt = stmt.where(tuple_(*keys) < tuple_(*at)).order_by(*(k.desc() for k in keys))
        found_rows = [GalleryRow(*row) for row in (await session.execute(stmt.limit(limit + 1))).all()]
        has_more = len(found_rows) > limit
        found_rows = found_rows[:limit]
        if anchor.backwards:
            found_rows.reverse()
        return GalleryRows(found_rows, total, 0, has_more, corrected)
    offset = min(max(offset, 0), max(total - 1, 0) // limit * limit)
    stmt = stmt.order_by(*(k.desc() for k in keys)).offset(offset).limit(limit + 1)
    found_rows = [GalleryRow(*row) for row in (await session.execute(stmt)).all()]
    return GalleryRows(found_rows[:limit], total, offset, len(found_rows) > limit, corrected)


async def gallery_row(
    *, session: AsyncSession, guild_id: int, image_id: int, viewer_discord_id: int | None = None
) -> GalleryRow | None:
    """One image of a server's gallery, if it is (still) in it."""
    viewer = await _user_id(session, viewer_discord_id)
    stmt = _rows(guild_id, viewer).where(Image.id == image_id)
    row = (await session.execute(stmt)).first()
    return GalleryRow(*row) if row is not None else None


async def visible_gallery_job(*, session: AsyncSession, guild_id: int, image_id: int) -> Job | None:
    """The job of an image of a server's gallery, if the image is (still) in it."""
    return await session.scalar(_visible(select(Job), guild_id).where(Image.id == image_id))


def in_gallery(guild_id: int | None) -> list[ColumnElement[bool]]:
    """What puts the image of a row of :func:`joined` in a server's gallery (``guild_id``),
    or in any gallery that is on (``None``)."""
    private_mode = func.coalesce(User.settings["private"].as_boolean(), false())
    in_guild: ColumnElement[bool] = (
        Job.guild_id.in_(select(Guild.id).where(Guild.gallery_enabled))
        if guild_id is None
        else Job.guild_id == guild_id
    )
    return [
        cast("ColumnElement[bool]", Image.public),  # the partial indexes' own predicate
        Image.nsfw.is_(False),
        Job.status == JobStatus.DONE,
        Job.private.is_(False),
        in_guild,
        private_mode.is_(False),
    ]


def joined(stmt: Select[Any]) -> Select[Any]:
    """``stmt`` over images with their job and its owner."""
    return stmt.select_from(Image).join(Job, Job.id == Image.job_id).join(User, User.id == Job.user_id)


def row_columns(viewer: int | None) -> Select[Any]:
    """The columns of a :class:`GalleryRow` (``viewer``: our user id, for "liked")."""
    liked: ColumnElement[bool] = (
        literal(False)
        if viewer is None
        else exists().where(GalleryLike.image_id == Image.id, GalleryLike.user_id == viewer)
    )
    return cast("Select[Any]", select(Image, Job, User.discord_id, Image.likes, liked))


def _visible(stmt: Select[Any], guild_id: int | None) -> Select[Any]:
    return joined(stmt).where(*in_gallery(guild_id))


def _rows(guild_id: int | None, viewer: int | None) -> Select[Any]:
    return _visible(row_columns(viewer), guild_id)


def _condition(where: GalleryWhere) -> ColumnElement[bool]:
    """The WHERE of a browsing filter."""
    condition: ColumnElement[bool] = true()
    if where.owner_discord_id is not None:
        condition = User.discord_id == where.owner_discord_id
    elif where.model is not None:
        condition = func.lower(Job.model) == where.model.lower()
    if where.since is not None:
        condition = and_(condition, Image.created_at >= where.since)
    return condition


async def _count(session: AsyncSession, guild_id: int | None, condition: ColumnElement[bool]) -> int:
    """How many images the filter finds, counted up to :data:`COUNT_CAP` + 1."""
    found = _visible(select(Image.id), guild_id).where(condition).limit(COUNT_CAP + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(found)) or 0)


async def _user_id(session: AsyncSession, discord_id: int | None) -> int | None:
    if discord_id is None:
        return None
    return await session.scalar(select(User.id).where(User.discord_id == discord_id))
