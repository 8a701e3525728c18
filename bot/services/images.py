"""What the buttons under a single image do to it: favorite, publish, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from db.models import Image, Job
from db.repositories import (
    favorite_image,
    images,
    like_image,
    unfavorite_image,
    unlike_image,
    upsert_user,
)


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image and who owns the job it belongs to."""

    image: Image
    job: Job
    owner_discord_id: int


async def find_image(session: AsyncSession, job_id: uuid.UUID, index: int) -> ImageRef:
    """The image ``index`` of a job.

    Raises:
        Refused: the job or the image does not exist (any more).
    """
    row = await images.owned_image(session=session, job_id=job_id, index=index)
    if row is None:
        raise Refused("That image no longer exists.", reason=RefusalReason.NOT_FOUND)
    return ImageRef(image=row[0], job=row[1], owner_discord_id=row[2])


async def toggle_favorite(
    *, sessions: async_sessionmaker[AsyncSession], discord_user_id: int, job_id: uuid.UUID, index: int
) -> bool:
    """Add the image to the user's favorites, or take it out if it was there.

    A public image is also liked in (or unliked from) the gallery, so ❤ means the same
    here and in ``/gallery``.

    Returns:
        True if the image is now a favorite.
    """
    async with sessions() as session, session.begin():
        ref = await find_image(session, job_id, index)
        user = await upsert_user(session=session, discord_id=discord_user_id)
        if await favorite_image(session=session, user_id=user.id, image_id=ref.image.id):
            await like_image(session=session, user_id=user.id, image_id=ref.image.id)
            return True
        await unfavorite_image(session=session, user_id=user.id, image_id=ref.image.id)
        await unlike_image(session=session, user_id=user.id, image_id=ref.image.id)
        return False


async def is_favorite(*, session: AsyncSession, discord_user_id: int, image_id: int) -> bool:
    """Whether the user saved the image."""
    return await images.is_favorite(session=session, discord_user_id=discord_user_id, image_id=image_id)


async def toggle_published(
    *, sessions: async_sessionmaker[AsyncSession], discord_user_id: int, job_id: uuid.UUID, index: int
) -> bool:
    """Show the image in the server gallery, or take it out (owner only).

    Returns:
        True if the image is now public.

    Raises:
        Refused: not the owner, or the image is flagged NSFW (never public).
    """
    async with sessions() as session, session.begin():
        ref = await find_image(session, job_id, index)
        if ref.owner_discord_id != discord_user_id:
            raise Refused(
                f"Only <@{ref.owner_discord_id}>, who made this image, can publish or unpublish it.",
                reason=RefusalReason.NOT_OWNER,
            )
        if ref.image.nsfw and not ref.image.public:
            raise Refused(
                "This image was flagged as NSFW, so it cannot go in the public gallery.",
                reason=RefusalReason.STATE,
            )
        public = not ref.image.public
        await images.set_image_public(session=session, image_id=ref.image.id, public=public)
        return public


async def delete_result(
    *, sessions: async_sessionmaker[AsyncSession], discord_user_id: int, job_id: uuid.UUID
) -> None:
    """Check that the user may delete a job's message, and take its images out of the gallery.

    Raises:
        Refused: the job is someone else's.
    """
    async with sessions() as session, session.begin():
        owner = await images.job_owner(session=session, job_id=job_id)
        if owner is None:
            raise Refused("That job no longer exists.", reason=RefusalReason.NOT_FOUND)
        if owner != discord_user_id:
            raise Refused(
                f"Only <@{owner}>, who made this image, can delete it. Nothing was changed.",
                reason=RefusalReason.NOT_OWNER,
            )
        await images.hide_job_images(session=session, job_id=job_id)
