"""Posting a prepared result to Discord: the interaction webhook while its token lives, else
the channel; retries of 429 and 5xx; never twice (a marker and a look through the channel)."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from discord.http import Route, handle_message_parameters
from redis.asyncio import Redis

from bot.delivery.acks import AckRecord, redis_key
from bot.delivery.messages import Prepared
from bot.webhooks import edit_original
from db.models import Job

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=30)
"""Stop using a token this long before it expires: an upload started at 14:59 may not finish."""
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
MARKER_TTL = timedelta(days=1)


class Outcome(enum.StrEnum):
    """What one delivery attempt did."""

    EDITED = "edited"
    """The acknowledgement message became the result."""
    FOLLOWUP = "followup"
    """Posted as a follow-up through the interaction webhook."""
    CHANNEL = "channel"
    """Posted as a channel message (the token had expired)."""
    FOUND = "found"
    """An earlier attempt had posted it; its id is now stored."""
    ALREADY = "already"
    """The job already had a result message."""
    NOT_READY = "not_ready"
    """The job has not ended (or was cancelled: nothing to deliver)."""
    BUSY = "busy"
    """Another delivery of this job is running."""
    UNDELIVERABLE = "undeliverable"
    """Discord refused (no channel, no access); counted towards giving up."""


def token_alive(job: Job, now: datetime | None = None) -> bool:
    """Whether the job's interaction token can still post (with a safety margin)."""
    if not job.interaction_token or job.interaction_created_at is None:
        return False
    now = now or datetime.now(UTC)
    return now < job.interaction_created_at + TOKEN_LIFETIME - TOKEN_MARGIN


class Poster:
    """Sends result messages through a connected client's HTTP session.

    Args:
        client: the connected bot.
        redis: for the "posting" markers that keep a retry from posting twice.
    """

    def __init__(self, *, client: discord.Client, redis: Redis) -> None:
        self.client = client
        self.redis = redis

    async def post(
        self, job: Job, owner: int, prepared: Prepared, ack: AckRecord | None
    ) -> tuple[Outcome, int, int] | None:
        primary = job.interaction_id is not None
        if token_alive(job):
            assert job.interaction_token is not None
            try:
                if primary:
                    data = await self._retry(
                        lambda: self._edit_original(job.interaction_token or "", prepared)
                    )
                    return Outcome.EDITED, int(data["channel_id"]), int(data["id"])
                return await self._post_new(
                    job, Outcome.FOLLOWUP, lambda: self._followup(job.interaction_token or "", prepared)
                )
            except discord.HTTPException as exc:
                if exc.status not in (401, 403, 404):
                    raise
                # Token expired early, or the acknowledgement was deleted: post in the channel.
                log.info(
                    "job %s: interaction webhook refused (%s); posting in the channel", job.id, exc.status
                )
        if job.channel_id is None:
            return None
        channel_id = job.channel_id
        try:
            return await self._post_new(
                job, Outcome.CHANNEL, lambda: self._channel_message(job, owner, prepared, ack)
            )
        except discord.HTTPException as exc:
            if exc.status in (403, 404):
                log.warning("job %s: cannot post in channel %s (%s)", job.id, channel_id, exc.status)
                return None
            raise

    async def _post_new(
        self, job: Job, outcome: Outcome, send: Callable[[], Awaitable[dict[str, Any]]]
    ) -> tuple[Outcome, int, int]:
        marker = redis_key("posting", job.id)
        if await self.redis.exists(marker):
            found = await self._find_posted(job)
            if found is not None:
                return Outcome.FOUND, found[0], found[1]
        await self.redis.set(marker, "1", ex=int(MARKER_TTL.total_seconds()))
        data = await self._retry(send)
        return outcome, int(data["channel_id"]), int(data["id"])

    async def _find_posted(self, job: Job) -> tuple[int, int] | None:
        """A message of ours in the job's channel whose buttons name this job (a lost id)."""
        if job.channel_id is None:
            return None
        channel = self.client.get_partial_messageable(job.channel_id)
        needle = str(job.id)
        try:
            async for message in channel.history(limit=100):
                if message.author.id != self.client.application_id and message.author != self.client.user:
                    continue
                for row in message.components:
                    for child in getattr(row, "children", []):
                        if needle in (getattr(child, "custom_id", None) or ""):
                            return message.channel.id, message.id
                if needle in message.content:
                    return message.channel.id, message.id
        except discord.HTTPException:
            log.info("job %s: cannot read channel history to look for a lost message", job.id)
        return None

    async def _retry(self, send: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        for delay in (*RETRY_DELAYS, None):
            try:
                return await send()
            except discord.HTTPException as exc:
                transient = exc.status == 429 or exc.status >= 500
                if not transient or delay is None:
                    raise
                log.info("Discord answered %s; retrying in %.0fs", exc.status, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _edit_original(self, token: str, prepared: Prepared) -> dict[str, Any]:
        for file in prepared.files:
            file.reset()
        return await edit_original(
            self.client, token, content=prepared.content, attachments=prepared.files, embeds=[],
            view=prepared.view, allowed_mentions=prepared.mentions(),
        )

    async def _followup(self, token: str, prepared: Prepared) -> dict[str, Any]:
        route = Route(
            "POST",
            "/webhooks/{webhook_id}/{webhook_token}",
            webhook_id=self.client.application_id,
            webhook_token=token,
        )
        for file in prepared.files:
            file.reset()
        with handle_message_parameters(
            content=prepared.content,
            files=prepared.files,
            view=prepared.view,
            allowed_mentions=prepared.mentions(),
        ) as params:
            return await self._request(route, params, params={"wait": "true"})

    async def _request(self, route: Route, message: Any, **kwargs: Any) -> dict[str, Any]:
        if message.files:
            result = await self.client.http.request(route, files=message.files, form=message.multipart, **kwargs)
        else:
            result = await self.client.http.request(route, json=message.payload, **kwargs)
        assert isinstance(result, dict)
        return result

    async def _channel_message(
        self, job: Job, owner: int, prepared: Prepared, ack: AckRecord | None
    ) -> dict[str, Any]:
        assert job.channel_id is not None
        channel = self.client.get_partial_messageable(job.channel_id)
        reference = (
            discord.MessageReference(
                message_id=ack.message_id, channel_id=ack.channel_id, fail_if_not_exists=False
            )
            if ack is not None and ack.channel_id == job.channel_id
            else None
        )
        for file in prepared.files:
            file.reset()
        # Only what is there is passed: Messageable.send reads discord.utils.MISSING as a
        # reference (and fails) and its types accept no None.
        optional: dict[str, Any] = {}
        if reference is not None:
            optional["reference"] = reference
        if prepared.view is not None:
            optional["view"] = prepared.view
        message = await channel.send(
            content=prepared.content,
            files=prepared.files,
            allowed_mentions=prepared.mentions(replied_user=True),
            **optional,
        )
        return {"channel_id": message.channel.id, "id": message.id}
