"""The moderation log."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ModerationEvent


async def record_moderation_event(
    *,
    session: AsyncSession,
    kind: str,
    user_id: int | None = None,
    guild_id: int | None = None,
    job_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> ModerationEvent:
    """Log something moderation refused or flagged.

    Args:
        kind: what happened, e.g. ``banned_word``, ``minor_filter``, ``nsfw_image``.
        detail: JSON-ready facts for moderators (the matched word, a score, ...).
    """
    event = ModerationEvent(kind=kind, user_id=user_id, guild_id=guild_id, job_id=job_id, detail=detail or {})
    session.add(event)
    await session.flush()
    return event
