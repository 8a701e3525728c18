"""Likes and favorites of images."""

from __future__ import annotations

from sqlalchemy import delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Favorite, GalleryLike, Image


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
    """How many users like the image."""
    return await session.scalar(select(func.count()).where(GalleryLike.image_id == image_id)) or 0


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
