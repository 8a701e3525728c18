"""Images as their buttons see them: who owns one, whether it is public, a user's favorites."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Favorite, Image, Job, User


class OwnedImage(NamedTuple):
    image: Image
    job: Job
    owner_discord_id: int


async def owned_image(*, session: AsyncSession, job_id: uuid.UUID, index: int) -> OwnedImage | None:
    """Image ``index`` of a job, with its job and the Discord id of the job's owner."""
    row = (
        await session.execute(
            select(Image, Job, User.discord_id)
            .join(Job, Image.job_id == Job.id)
            .join(User, Job.user_id == User.id)
            .where(Image.job_id == job_id, Image.index == index)
        )
    ).first()
    return OwnedImage(*row) if row is not None else None


async def job_owner(*, session: AsyncSession, job_id: uuid.UUID) -> int | None:
    """The Discord id of the user who queued a job."""
    return await session.scalar(select(User.discord_id).join(Job, Job.user_id == User.id).where(Job.id == job_id))


async def is_favorite(*, session: AsyncSession, discord_user_id: int, image_id: int) -> bool:
    """Whether the user saved the image."""
    found = await session.scalar(
        select(Favorite.image_id)
        .join(User, Favorite.user_id == User.id)
        .where(User.discord_id == discord_user_id, Favorite.image_id == image_id)
    )
    return found is not None


async def set_image_public(*, session: AsyncSession, image_id: int, public: bool) -> None:
    """Publish an image to its server's gallery, or take it out."""
    await session.execute(update(Image).where(Image.id == image_id).values(public=public))


async def hide_job_images(*, session: AsyncSession, job_id: uuid.UUID) -> None:
    """Take every image of a job out of the gallery (its message was deleted)."""
    await session.execute(update(Image).where(Image.job_id == job_id).values(public=False))
