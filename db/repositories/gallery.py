"""A server's public gallery (which images show, in which order), likes and favorites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    column,
    delete,
    exists,
    false,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Favorite, GalleryLike, GalleryQuery, Image, Job, JobStatus, User


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

TRIGRAM_THRESHOLD = 0.3
"""Least ``word_similarity`` for the fallback search (0-1; pg_trgm's own default is 0.6)."""
COUNT_CAP = 10_000
"""A page counts the images its filter finds up to this many and one more: an exact count
of a million rows on every page is what made the gallery slow; "10,000+" is as useful."""

_PG_EXTENSION = table("pg_extension", column("extname"))
_ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")


@dataclass(frozen=True, slots=True)
class GalleryWhere:
    """Which of a server's gallery images a page shows; nothing set shows them all, newest first."""

    search: str | None = None
    """Full-text words over the prompts (trigram look-alikes when no word matches)."""
    owner_discord_id: int | None = None
    model: str | None = None
    by_likes: bool = False
    """Most liked first."""


class GalleryRow(NamedTuple):
    image: Image
    job: Job
    owner_discord_id: int
    likes: int
    liked: bool
    """Whether the viewer likes it."""


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
    guild_id: int,
    where: GalleryWhere,
    offset: int,
    limit: int,
    viewer_discord_id: int | None = None,
) -> tuple[list[GalleryRow], int, bool]:
    """One slice of a server's gallery.

    Only what the gallery may show, whatever the filter: images published by their owner,
    of done jobs made in this server, never NSFW-flagged ones, never from private jobs, and
    never from users who have turned private mode on since.

    Returns:
        The rows, how many images the filter finds in all (at most :data:`COUNT_CAP` + 1:
        more than the cap is "COUNT_CAP+"), and whether they are trigram look-alikes of the
        search words (no word matched). An ``offset`` past the end is moved back to the last row.
    """
    viewer = await _user_id(session, viewer_discord_id)
    condition, rank = _condition(where)
    total = await _count(session, guild_id, condition)
    similar = False
    if total == 0 and where.search and await _has_trigram(session):
        # The operator form (``words <% prompt``: word_similarity at least the threshold) is
        # what the trigram index on prompts serves; the function form would read every row.
        await session.execute(
            text(f"SET LOCAL pg_trgm.word_similarity_threshold = {float(TRIGRAM_THRESHOLD)}")
        )
        condition = literal(where.search).op("<%")(Job.prompt)
        rank = func.word_similarity(where.search, Job.prompt)
        total = await _count(session, guild_id, condition)
        similar = total > 0
    offset = min(max(offset, 0), max(total - 1, 0) // limit * limit)
    order: list[Any] = []
    if rank is not None:
        order.append(rank.desc())
    if where.by_likes:
        order.append(Image.likes.desc())
    order += [Image.created_at.desc(), Image.id.desc()]
    stmt = _rows(guild_id, viewer).where(condition).order_by(*order).offset(offset).limit(limit)
    rows = [GalleryRow(*row) for row in (await session.execute(stmt)).all()]
    return rows, total, similar


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


def _visible(stmt: Select[Any], guild_id: int) -> Select[Any]:
    private_mode = func.coalesce(User.settings["private"].as_boolean(), false())
    return (
        stmt.select_from(Image)
        .join(Job, Job.id == Image.job_id)
        .join(User, User.id == Job.user_id)
        .where(
            Image.public,
            Image.nsfw.is_(False),
            Job.status == JobStatus.DONE,
            Job.private.is_(False),
            Job.guild_id == guild_id,
            private_mode.is_(False),
        )
    )


def _rows(guild_id: int, viewer: int | None) -> Select[Any]:
    liked: ColumnElement[bool] = (
        literal(False)
        if viewer is None
        else exists().where(GalleryLike.image_id == Image.id, GalleryLike.user_id == viewer)
    )
    columns = cast("Select[Any]", select(Image, Job, User.discord_id, Image.likes, liked))
    return _visible(columns, guild_id)


def _condition(where: GalleryWhere) -> tuple[ColumnElement[bool], ColumnElement[Any] | None]:
    """The WHERE of a filter, and its relevance rank when it has one."""
    if where.search is not None:
        query = func.websearch_to_tsquery(_ENGLISH, where.search)
        return Job.prompt_tsv.op("@@")(query), func.ts_rank(Job.prompt_tsv, query)
    if where.owner_discord_id is not None:
        return User.discord_id == where.owner_discord_id, None
    if where.model is not None:
        return func.lower(Job.model) == where.model.lower(), None
    return true(), None


async def _count(session: AsyncSession, guild_id: int, condition: ColumnElement[bool]) -> int:
    """How many images the filter finds, counted up to :data:`COUNT_CAP` + 1."""
    found = _visible(select(Image.id), guild_id).where(condition).limit(COUNT_CAP + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(found)) or 0)


async def _user_id(session: AsyncSession, discord_id: int | None) -> int | None:
    if discord_id is None:
        return None
    return await session.scalar(select(User.id).where(User.discord_id == discord_id))


async def _has_trigram(session: AsyncSession) -> bool:
    found = await session.scalar(select(literal(1)).where(_PG_EXTENSION.c.extname == "pg_trgm"))
    return found is not None
