"""What delivery remembers in Redis: each job's acknowledgement message, and its markers."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.delivery.files import DEFAULT_SIZE_LIMIT

KEY_PREFIX = "imaginarium:"


def redis_key(what: str, job_id: uuid.UUID) -> str:
    """A Redis key of one job: ``delivered``, ``posting``, ``deliver-lock``, ``delivery-failures``."""
    return f"{KEY_PREFIX}{what}:{job_id}"


@dataclass(frozen=True, slots=True)
class AckRecord:
    """A job's acknowledgement message and the upload limit of its interaction."""

    channel_id: int
    message_id: int
    size_limit: int = DEFAULT_SIZE_LIMIT


class AckStore:
    """Remembers each job's acknowledgement message (in Redis, for a month)."""

    TTL_S = 30 * 24 * 3600

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def remember(self, job_id: uuid.UUID, *, channel_id: int, message_id: int, size_limit: int) -> None:
        value = json.dumps({"channel_id": channel_id, "message_id": message_id, "size_limit": size_limit})
        await self.redis.set(redis_key("ack", job_id), value, ex=self.TTL_S)

    async def get(self, job_id: uuid.UUID) -> AckRecord | None:
        raw = await self.redis.get(redis_key("ack", job_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return AckRecord(
            int(data["channel_id"]),
            int(data["message_id"]),
            int(data.get("size_limit") or DEFAULT_SIZE_LIMIT),
        )
