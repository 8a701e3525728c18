"""Answering a command that queues a prompt's jobs (``/imagine``, ``/blend``, a gallery prompt)."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.replies import acknowledge, bot_of, defer_public, refuse, refused_before_deferring, requester_from
from bot.services.errors import Refused
from bot.services.requests import ImageInput
from bot.services.submit import submit_prompt
from bot.views.buttons import queued_view
from core.spec import JobKind


async def submit_and_acknowledge(
    interaction: discord.Interaction,
    text: str,
    *,
    images: Sequence[ImageInput] = (),
    kind: JobKind = JobKind.IMAGINE,
    title: str = "Imagine",
    variant: str | None = None,
) -> None:
    """Queue a prompt's jobs for an interaction not yet answered, and answer it.

    What can be refused without I/O is refused as the first response (ephemeral); then the
    interaction is deferred publicly (Discord drops interactions not answered in 3 s) before
    the database is asked.
    """
    bot = bot_of(interaction)
    requester = requester_from(interaction)
    if await refused_before_deferring(interaction, text, images):
        return
    await defer_public(interaction)
    try:
        submission = await submit_prompt(
            sessions=bot.sessions,
            publisher=bot.publisher,
            catalog=bot.catalog,
            requester=requester,
            text=text,
            images=images,
            kind=kind,
            variant=variant,
            banned_words=bot.banned_words,
            workers=bot.workers,
        )
    except Refused as refusal:
        await refuse(interaction, refusal)
        return
    await acknowledge(interaction, submission, title=title, view=queued_view(submission.jobs[0].job_id))
