"""Jobs the web gallery leaves for the bot to queue (Vary Region with a drawn mask), and the
masks themselves. The web writes a request; the bot claims pending ones, submits each the
way a click would, and writes back what happened; the page polls for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Mask, WebRequest

PENDING, QUEUED, REFUSED = "pending", "queued", "refused"


async def create_mask_request(
    *,
    session: AsyncSession,
    link_id: str,
    user_id: int,
    guild_discord_id: int | None,
    channel_id: int | None,
    source_job_id: uuid.UUID,
    image_index: int,
    prompt: str,
    png: bytes,
    width: int,
    height: int,
) -> WebRequest | None:
    """A pending request with its mask; None when this link was used already."""
    if await request_by_link(session=session, link_id=link_id) is not None:
        return None
    mask = Mask(user_id=user_id, png=png, width=width, height=height)
    session.add(mask)
    await session.flush()
    stmt = (
        pg_insert(WebRequest)
        .values(
            link_id=link_id,
            user_id=user_id,
            guild_discord_id=guild_discord_id,
            channel_id=channel_id,
            source_job_id=source_job_id,
            image_index=image_index,
            prompt=prompt,
            mask_id=mask.id,
        )
        .on_conflict_do_nothing(index_elements=[WebRequest.link_id])
        .returning(WebRequest)
    )
    return (await session.scalars(stmt)).first()


async def request_by_link(*, session: AsyncSession, link_id: str) -> WebRequest | None:
    return await session.scalar(select(WebRequest).where(WebRequest.link_id == link_id))


async def claim_pending(*, session: AsyncSession, limit: int = 10) -> list[WebRequest]:
    """Pending requests, oldest first, locked for this transaction (others skip them)."""
    stmt = (
        select(WebRequest)
        .where(WebRequest.status == PENDING)
        .order_by(WebRequest.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(await session.scalars(stmt))


async def resolve(
    *, session: AsyncSession, request_id: int, status: str, message: str, job_id: uuid.UUID | None = None
) -> None:
    await session.execute(
        update(WebRequest)
        .where(WebRequest.id == request_id)
        .values(status=status, message=message, job_id=job_id, handled_at=datetime.now(UTC))
    )


async def mask_png(*, session: AsyncSession, mask_id: int) -> bytes | None:
    return await session.scalar(select(Mask.png).where(Mask.id == mask_id))
