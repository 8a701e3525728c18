"""Vary (Region) → Draw…: the mask editor of the web gallery, and the requests it sends back.

Discord has no drawing tool, so "Draw…" in the region menu answers (to the member alone)
with a signed link to the web gallery's editor, good for 15 minutes and one request. The
editor stores the member's mask and a pending request (``web_requests``); the relay here
claims pending requests, submits each exactly as a click would (the member's credits,
caps, bans and moderation: :func:`bot.services.submit.submit_action`), and writes back
what happened for the editor's page. The result posts in the channel the link was made in,
with its buttons, like any other result.

A request's job carries a synthetic interaction id (the request's id, negated: Discord's
are positive), so a relay that dies between queueing and writing back queues it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import discord

from bot.services.errors import Refused
from bot.services.requests import Requester
from bot.services.submit import submit_action
from core import kinds
from core.signing import EditorLink, editor_url
from core.spec import JobKind
from db.repositories import web_requests as repo

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class EditorConfig:
    base_url: str
    secret: str


async def send_editor_link(
    interaction: discord.Interaction, editor: EditorConfig, job_id: uuid.UUID, index: int
) -> None:
    """Answer "Draw…" with the member's own link to the editor."""
    link = EditorLink(
        job_id=str(job_id),
        index=index,
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        link_id=secrets.token_urlsafe(12),
    )
    view = discord.ui.View()
    view.add_item(
        discord.ui.Button(label="Open the mask editor", url=editor_url(editor.base_url, editor.secret, link))
    )
    await interaction.response.send_message(
        "Paint the region to repaint, edit the prompt if you like, and send it: the result appears "
        "in this channel. The link is yours alone and works for 15 minutes.",
        view=view,
        ephemeral=True,
    )


class WebRequestRelay:
    """Queues the jobs the web gallery asks for (see the module docstring)."""

    def __init__(self, *, bot: Any) -> None:
        self.bot = bot
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="web-requests")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                while await self.relay_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("web requests: a round failed; retrying")
            await asyncio.sleep(POLL_SECONDS)

    async def relay_once(self) -> int:
        """Handle the pending requests there are now; returns how many."""
        sessions = self.bot.sessions
        async with sessions() as session, session.begin():
            pending = await repo.claim_pending(session=session)
            for request in pending:
                status, message, job_id = await self._submit(request)
                await repo.resolve(
                    session=session, request_id=request.id, status=status, message=message, job_id=job_id
                )
        return len(pending)

    async def _submit(self, request: Any) -> tuple[str, str, uuid.UUID | None]:
        from db.models import User

        async with self.bot.sessions() as session:
            user = await session.get(User, request.user_id)
        if user is None:
            return repo.REFUSED, "Your account is gone.", None
        roles: tuple[int, ...] = ()
        guild = self.bot.get_guild(request.guild_discord_id) if request.guild_discord_id else None
        member = guild.get_member(user.discord_id) if guild is not None else None
        if member is not None:
            roles = tuple(role.id for role in member.roles)
        requester = Requester(
            user_id=user.discord_id,
            guild_id=request.guild_discord_id,
            channel_id=request.channel_id,
            role_ids=roles,
            interaction_id=-int(request.id),
        )
        try:
            submission = await submit_action(
                sessions=self.bot.sessions,
                publisher=self.bot.publisher,
                catalog=self.bot.catalog,
                requester=requester,
                parent_id=request.source_job_id,
                recipe=kinds.recipe(JobKind.REGION, kinds.DRAWN),
                index=request.image_index,
                remix_text=request.prompt,
                mask_id=request.mask_id,
                workers=self.bot.workers,
            )
        except Refused as refusal:
            return repo.REFUSED, refusal.message, None
        job = submission.jobs[0]
        where = "in the channel you drew it from" if request.channel_id else "in Discord"
        return repo.QUEUED, f"Queued ({job.cost} credits): the result appears {where}.", job.job_id
