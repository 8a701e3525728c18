"""A server's public gallery: finding published images, liking them, reusing their prompts.

What shows is decided here, once, for every mode: images published by their owner, of done
jobs made in this server, never NSFW-flagged ones, never from private jobs, and never from
users who have turned private mode on since (their old images leave the gallery with them).

Modes: recent, top (by ❤ likes), search (full-text and by meaning, ranked together; a
misspelt word is searched as the nearest word a prompt has: see
:mod:`db.repositories.gallery_search`), by user and by model.

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

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import RefusalReason, Refused
from core import prompt as grammar
from core.spec import JobSpec
from db.embeddings import embed_query
from db.models import Guild, Job
from db.repositories import gallery as repo
from db.repositories import guild_by_discord_id, upsert_user

PER_PAGE = 1
MAX_QUERY_LENGTH = 200


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
    """Images the filter finds, counted up to ``repo.COUNT_CAP`` + 1."""
    per_page: int = PER_PAGE
    corrected: str | None = None
    """The words searched instead when no prompt has the ones asked for (typos)."""
    has_next: bool = False

    @property
    def similar(self) -> bool:
        """The search found no exact words and these are for the nearest known ones."""
        return self.corrected is not None

    @property
    def pages(self) -> int:
        counted = math.ceil(min(self.total, repo.COUNT_CAP) / self.per_page)
        return max(1, counted, self.page + 1 + self.has_next)

    @property
    def more(self) -> bool:
        """The filter finds more images than a page counts (``repo.COUNT_CAP``)."""
        return self.total > repo.COUNT_CAP

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def first_id(self) -> int | None:
        return self.entries[0].image_id if self.entries else None

    @property
    def last_id(self) -> int | None:
        return self.entries[-1].image_id if self.entries else None


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
    query_id = await repo.store_gallery_query(session=session, mode=mode.value, text=words)
    return GalleryFilter(mode, query_id, words)


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
    text = await repo.gallery_query_text(session=session, query_id=arg, mode=mode.value)
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
    anchor: repo.Anchor | None = None,
) -> GalleryPage:
    """One page of the server's gallery, as ``filter`` selects and orders it.

    ``anchor`` (the image shown just before or after, for ▶ and ◀) finds the page by keyset,
    as fast deep in the gallery as at its start; ``page`` is then only its number. Without
    one (and for searches, which rank a bounded list) the page is found by its number.

    Raises:
        Refused: ``STATE``: the server turned its gallery off.
    """
    guild = await _gallery_guild(session, guild_discord_id)
    where = _where(filter)
    if where.search is not None:
        anchor = None
    found = await repo.gallery_rows(
        session=session,
        guild_id=guild.id,
        where=where,
        offset=page * per_page,
        anchor=anchor,
        limit=per_page,
        viewer_discord_id=viewer_discord_id,
        embed=embed_query,
    )
    if anchor is not None and not found.rows:
        # The anchor left the gallery (unpublished, deleted): find the page by its number.
        return await gallery_page(
            session=session,
            guild_discord_id=guild_discord_id,
            filter=filter,
            page=page,
            per_page=per_page,
            viewer_discord_id=viewer_discord_id,
        )
    if anchor is None:
        page = found.offset // per_page
        has_next = found.has_more
    else:
        page = max(page, 0)
        # Going back, the page after this one is the one the member came from.
        has_next = True if anchor.backwards else found.has_more
        if anchor.backwards and not found.has_more:
            page = 0
    return GalleryPage(
        filter=filter,
        entries=tuple(_entry(row) for row in found.rows),
        page=page,
        total=found.total,
        per_page=per_page,
        corrected=found.corrected,
        has_next=has_next,
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
    row = await repo.gallery_row(
        session=session, guild_id=guild.id, image_id=image_id, viewer_discord_id=viewer_discord_id
    )
    if row is None:
        raise Refused("That image is no longer in this server's gallery.", reason=RefusalReason.NOT_FOUND)
    return dataclasses.replace(found, entries=(_entry(row),))


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
        await repo.like_image(session=session, user_id=user.id, image_id=image_id)
    else:
        await repo.unlike_image(session=session, user_id=user.id, image_id=image_id)
    return await repo.count_likes(session=session, image_id=image_id)


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


# --------------------------------------------------------------------------- helpers


def _where(filter: GalleryFilter) -> repo.GalleryWhere:
    if filter.mode is GalleryMode.SEARCH:
        return repo.GalleryWhere(search=filter.text or "")
    if filter.mode is GalleryMode.USER:
        return repo.GalleryWhere(owner_discord_id=filter.arg)
    if filter.mode is GalleryMode.MODEL:
        return repo.GalleryWhere(model=filter.text or "")
    return repo.GalleryWhere(by_likes=filter.mode is GalleryMode.TOP)


async def _gallery_guild(session: AsyncSession, guild_discord_id: int) -> Guild:
    guild = await guild_by_discord_id(session=session, discord_id=guild_discord_id)
    if guild is not None and not guild.gallery_enabled:
        raise Refused("This server's admins have turned the gallery off.", reason=RefusalReason.STATE)
    if guild is None:
        # A server the bot has never made an image for: an empty gallery, not an error.
        return Guild(id=-1, discord_id=guild_discord_id, gallery_enabled=True)
    return guild


async def _visible_image(session: AsyncSession, guild_id: int, image_id: int) -> Job:
    job = await repo.visible_gallery_job(session=session, guild_id=guild_id, image_id=image_id)
    if job is None:
        raise Refused("That image is no longer in this server's gallery.", reason=RefusalReason.NOT_FOUND)
    return job


def _entry(row: repo.GalleryRow) -> GalleryEntry:
    image, job = row.image, row.job
    return GalleryEntry(
        image_id=image.id,
        job_id=job.id,
        index=image.index,
        owner_discord_id=int(row.owner_discord_id),
        recipe=grammar.format(dataclasses.replace(JobSpec.from_dict(job.params), seed=image.seed)),
        model=job.model,
        width=image.width,
        height=image.height,
        storage_key=image.storage_key,
        created_at=image.created_at,
        likes=int(row.likes),
        liked=bool(row.liked),
    )
