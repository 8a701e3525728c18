"""A server's public gallery: finding published images, liking them, reusing their prompts.

What shows is decided here, once, for every mode: images published by their owner, of done
jobs made in this server, never NSFW-flagged ones, never from private jobs, and never from
users who have turned private mode on since (their old images leave the gallery with them).

Modes: recent, top (by ❤ likes), search (Postgres full-text over prompts, through the
jobs' ``prompt_tsv``; when that finds nothing, trigram word similarity if ``pg_trgm`` is
installed, so typos and word fragments still find something), by user and by model.

A gallery page is addressed by ids only: the mode, one number (a user's Discord id, or the
id of the stored search words or model name, see :class:`db.models.GalleryQuery`) and a
page number. Paging buttons carry those, so they keep working after the bot restarts.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    column,
    exists,
    false,
    func,
    literal,
    literal_column,
    select,
    table,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import RefusalReason, Refused
from core import prompt as grammar
from core.spec import JobSpec
from db.models import GalleryLike, GalleryQuery, Guild, Image, Job, JobStatus, User
from db.repositories import like_image, unlike_image, upsert_user

PER_PAGE = 1
MAX_QUERY_LENGTH = 200
TRIGRAM_THRESHOLD = 0.3
"""Least ``word_similarity`` for the fallback search (0-1; pg_trgm's own default is 0.6)."""

_PG_EXTENSION = table("pg_extension", column("extname"))
_ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")


class GalleryMode(enum.StrEnum):
    """How a gallery is browsed. ``code`` is the one letter that custom ids use."""

    RECENT = "recent"
    TOP = "top"
    SEARCH = "search"
    USER = "user"
    MODEL = "model"

    @property
    def code(self) -> str:
        return _CODES[self]

    @classmethod
    def from_code(cls, code: str) -> GalleryMode:
        """The mode for a custom-id letter.

        Raises:
            ValueError: no mode has that letter.
        """
        for mode, letter in _CODES.items():
            if letter == code:
                return mode
        raise ValueError(f"no gallery mode {code!r}")


_CODES = {
    GalleryMode.RECENT: "r",
    GalleryMode.TOP: "t",
    GalleryMode.SEARCH: "s",
    GalleryMode.USER: "u",
    GalleryMode.MODEL: "m",
}


@dataclass(frozen=True, slots=True)
class GalleryFilter:
    """What a gallery shows, as ids: ``arg`` is 0, a user's Discord id or a stored query's id."""

    mode: GalleryMode
    arg: int = 0
    text: str | None = None
    """The search words or model name (for display and for the query itself)."""

    def describe(self) -> str:
        """A heading for the page (``Search: "red fox"``)."""
        if self.mode is GalleryMode.RECENT:
            return "Most recent"
        if self.mode is GalleryMode.TOP:
            return "Most liked"
        if self.mode is GalleryMode.SEARCH:
            return f"Search: “{self.text}”"
        if self.mode is GalleryMode.USER:
            return f"By <@{self.arg}>"
        return f"Model: {self.text}"


@dataclass(frozen=True, slots=True)
class GalleryEntry:
    """One image in a gallery page, with everything needed to show it and make it again."""

    image_id: int
    job_id: uuid.UUID
    index: int
    owner_discord_id: int
    recipe: str
    """The full prompt with its flags (``core.prompt.format``), seed and model included."""
    model: str
    width: int
    height: int
    storage_key: str
    created_at: datetime
    likes: int
    liked: bool
    """Whether the viewer likes it."""


@dataclass(frozen=True, slots=True)
class GalleryPage:
    """One page of a gallery."""

    filter: GalleryFilter
    entries: tuple[GalleryEntry, ...]
    page: int
    """0-based; clamped to the last page."""
    total: int
    per_page: int = PER_PAGE
    similar: bool = False
    """The search found no exact words and these are trigram look-alikes."""

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages


# --------------------------------------------------------------------------- filters


async def open_filter(
    *,
    session: AsyncSession,
    mode: GalleryMode,
    text: str | None = None,
    user_discord_id: int | None = None,
) -> GalleryFilter:
    """The filter for a new ``/gallery`` request; search words and model names get an id.

    Raises:
        Refused: ``INPUT``: search words or a model name missing or too long, or no user
            for the by-user mode.
    """
    if mode in (GalleryMode.RECENT, GalleryMode.TOP):
        return GalleryFilter(mode)
    if mode is GalleryMode.USER:
        if user_discord_id is None:
            raise Refused("Say whose images to show.", reason=RefusalReason.INPUT)
        return GalleryFilter(mode, user_discord_id)
    words = " ".join((text or "").split())
    if not words:
        what = "words to search for" if mode is GalleryMode.SEARCH else "a model name"
        raise Refused(f"Give {what}.", reason=RefusalReason.INPUT)
    if len(words) > MAX_QUERY_LENGTH:
        raise Refused(f"Keep it under {MAX_QUERY_LENGTH} characters.", reason=RefusalReason.INPUT)
    if mode is GalleryMode.MODEL:
        words = words.lower()
    stmt = (
        pg_insert(GalleryQuery)
        .values(mode=mode.value, text=words)
        # A no-op update so that RETURNING gives the id of an existing row too.
        .on_conflict_do_update(
            index_elements=[GalleryQuery.mode, GalleryQuery.text], set_={"mode": mode.value}
        )
        .returning(GalleryQuery.id)
    )
    query_id = (await session.execute(stmt)).scalar_one()
    return GalleryFilter(mode, int(query_id), words)


async def load_filter(*, session: AsyncSession, code: str, arg: int) -> GalleryFilter:
    """The filter a paging button names (see :meth:`GalleryMode.code`).

    Raises:
        Refused: ``NOT_FOUND``: the stored query is gone or the mode is unknown.
    """
    try:
        mode = GalleryMode.from_code(code)
    except ValueError:
        raise Refused("That gallery page no longer exists.", reason=RefusalReason.NOT_FOUND) from None
    if mode in (GalleryMode.RECENT, GalleryMode.TOP):
        return GalleryFilter(mode)
    if mode is GalleryMode.USER:
        return GalleryFilter(mode, arg)
    text = await session.scalar(
        select(GalleryQuery.text).where(GalleryQuery.id == arg, GalleryQuery.mode == mode.value)
    )
    if text is None:
        raise Refused(
            "That gallery page no longer exists; run /gallery again.", reason=RefusalReason.NOT_FOUND
        )
    return GalleryFilter(mode, arg, text)


# --------------------------------------------------------------------------- pages


async def gallery_page(
    *,
    session: AsyncSession,
    guild_discord_id: int,
    filter: GalleryFilter,
    page: int = 0,
    per_page: int = PER_PAGE,
    viewer_discord_id: int | None = None,
) -> GalleryPage:
    """One page of the server's gallery, as ``filter`` selects and orders it.

    Raises:
        Refused: ``STATE``: the server turned its gallery off.
    """
    guild = await _gallery_guild(session, guild_discord_id)
    viewer = await session.scalar(select(User.id).where(User.discord_id == viewer_discord_id))
    condition, rank = _mode_condition(filter)
    total = await _count(session, guild.id, condition)
    similar = False
    if total == 0 and filter.mode is GalleryMode.SEARCH and filter.text and await _has_trigram(session):
        similarity = func.word_similarity(filter.text, Job.prompt)
        condition, rank = similarity >= TRIGRAM_THRESHOLD, similarity
        total = await _count(session, guild.id, condition)
        similar = total > 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 0), pages - 1)
    likes = _likes_subquery()
    stmt = _visible(
        select(Image, Job, User.discord_id, func.coalesce(likes.c.likes, 0), _liked_by(viewer)).outerjoin(
            likes, likes.c.image_id == Image.id
        ),
        guild.id,
    ).where(condition)
    order: list[Any] = []
    if rank is not None:
        order.append(rank.desc())
    if filter.mode is GalleryMode.TOP:
        order.append(func.coalesce(likes.c.likes, 0).desc())
    order += [Image.created_at.desc(), Image.id.desc()]
    rows = (await session.execute(stmt.order_by(*order).offset(page * per_page).limit(per_page))).all()
    entries = tuple(_entry(image, job, owner, count, liked) for image, job, owner, count, liked in rows)
    return GalleryPage(
        filter=filter, entries=entries, page=page, total=total, per_page=per_page, similar=similar
    )


async def gallery_page_showing(
    *,
    session: AsyncSession,
    guild_discord_id: int,
    filter: GalleryFilter,
    page: int,
    image_id: int,
    viewer_discord_id: int | None = None,
) -> GalleryPage:
    """A one-image page that still shows ``image_id`` when the ordering has moved it.

    After a like the "top" order changes; the viewer should keep seeing the image they just
    liked rather than whatever now sits at that page number.

    Raises:
        Refused: ``NOT_FOUND``: the image left the gallery; ``STATE``: the gallery is off.
    """
    found = await gallery_page(
        session=session,
        guild_discord_id=guild_discord_id,
        filter=filter,
        page=page,
        per_page=1,
        viewer_discord_id=viewer_discord_id,
    )
    if any(entry.image_id == image_id for entry in found.entries):
        return found
    guild = await _gallery_guild(session, guild_discord_id)
    viewer = await session.scalar(select(User.id).where(User.discord_id == viewer_discord_id))
    likes = _likes_subquery()
    stmt = _visible(
        select(Image, Job, User.discord_id, func.coalesce(likes.c.likes, 0), _liked_by(viewer)).outerjoin(
            likes, likes.c.image_id == Image.id
        ),
        guild.id,
    ).where(Image.id == image_id)
    row = (await session.execute(stmt)).first()
    if row is None:
        raise Refused("That image is no longer in this server's gallery.", reason=RefusalReason.NOT_FOUND)
    return dataclasses.replace(found, entries=(_entry(*row),))


async def set_like(
    *, session: AsyncSession, guild_discord_id: int, viewer_discord_id: int, image_id: int, liked: bool
) -> int:
    """Like (``liked=True``) or unlike an image in this server's gallery; repeating is harmless.

    Returns:
        The image's number of likes afterwards.

    Raises:
        Refused: ``NOT_FOUND``: the image is not (or no longer) in this server's gallery.
    """
    guild = await _gallery_guild(session, guild_discord_id)
    await _visible_image(session, guild.id, image_id)
    user = await upsert_user(session=session, discord_id=viewer_discord_id)
    if liked:
        await like_image(session=session, user_id=user.id, image_id=image_id)
    else:
        await unlike_image(session=session, user_id=user.id, image_id=image_id)
    return await session.scalar(select(func.count()).where(GalleryLike.image_id == image_id)) or 0


async def reusable_prompt(*, session: AsyncSession, guild_discord_id: int, image_id: int) -> str:
    """The recipe of a gallery image to start a new ``/imagine`` from: flags kept, seed dropped
    (so the new images are new), lane left to the user.

    Raises:
        Refused: ``NOT_FOUND``: the image is not in this server's gallery (any more).
    """
    guild = await _gallery_guild(session, guild_discord_id)
    job = await _visible_image(session, guild.id, image_id)
    spec = dataclasses.replace(JobSpec.from_dict(job.params), seed=None, repeat=1, lane=None)
    return grammar.format(spec)


# --------------------------------------------------------------------------- queries


def _visible(stmt: Select[Any], guild_id: int) -> Select[Any]:
    """Only what the gallery may show, whatever the mode (see the module docstring)."""
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


def _mode_condition(filter: GalleryFilter) -> tuple[ColumnElement[bool], ColumnElement[Any] | None]:
    """The WHERE of a mode, and its relevance rank when it has one."""
    if filter.mode is GalleryMode.SEARCH:
        query = func.websearch_to_tsquery(_ENGLISH, filter.text or "")
        return Job.prompt_tsv.op("@@")(query), func.ts_rank(Job.prompt_tsv, query)
    if filter.mode is GalleryMode.USER:
        return User.discord_id == filter.arg, None
    if filter.mode is GalleryMode.MODEL:
        return func.lower(Job.model) == (filter.text or "").lower(), None
    return true(), None


async def _count(session: AsyncSession, guild_id: int, condition: ColumnElement[bool]) -> int:
    stmt = _visible(select(func.count()), guild_id).where(condition)
    return int(await session.scalar(stmt) or 0)


def _likes_subquery() -> Any:
    return (
        select(GalleryLike.image_id, func.count().label("likes"))
        .group_by(GalleryLike.image_id)
        .subquery("likes")
    )


def _liked_by(viewer: int | None) -> ColumnElement[bool]:
    if viewer is None:
        return literal(False)
    return exists().where(GalleryLike.image_id == Image.id, GalleryLike.user_id == viewer)


async def _has_trigram(session: AsyncSession) -> bool:
    found = await session.scalar(select(literal(1)).where(_PG_EXTENSION.c.extname == "pg_trgm"))
    return found is not None


async def _gallery_guild(session: AsyncSession, guild_discord_id: int) -> Guild:
    guild = await session.scalar(select(Guild).where(Guild.discord_id == guild_discord_id))
    if guild is not None and not guild.gallery_enabled:
        raise Refused("This server's admins have turned the gallery off.", reason=RefusalReason.STATE)
    if guild is None:
        # A server the bot has never made an image for: an empty gallery, not an error.
        return Guild(id=-1, discord_id=guild_discord_id, gallery_enabled=True)
    return guild


async def _visible_image(session: AsyncSession, guild_id: int, image_id: int) -> Job:
    job = await session.scalar(_visible(select(Job), guild_id).where(Image.id == image_id))
    if job is None:
        raise Refused("That image is no longer in this server's gallery.", reason=RefusalReason.NOT_FOUND)
    return job


def _entry(image: Image, job: Job, owner: int, likes: int, liked: bool) -> GalleryEntry:
    return GalleryEntry(
        image_id=image.id,
        job_id=job.id,
        index=image.index,
        owner_discord_id=int(owner),
        recipe=grammar.format(dataclasses.replace(JobSpec.from_dict(job.params), seed=image.seed)),
        model=job.model,
        width=image.width,
        height=image.height,
        storage_key=image.storage_key,
        created_at=image.created_at,
        likes=int(likes),
        liked=bool(liked),
    )
