"""The steps every command and button shares: who is asking, acknowledging, refusing.

The pattern (from the style guide): a callback defers, calls a service, and renders what it
returned. Refusals that need no I/O (a prompt that does not parse, a banned word) are the
interaction's first response, ephemeral, before any deferral. Otherwise a public
"thinking" acknowledgement is made first (:func:`defer_public`), so the 3-second rule holds
whatever the database does, and its message id is kept: it is what a result posted after
the interaction token died replies to.

A refusal after a public deferral must reach the user alone whatever Discord does with a
follow-up to a deleted deferral (that has varied). A follow-up sent while the deferral is
still loading becomes the deferral itself, public; so :func:`refuse` first resolves the
loading state with a neutral edit, then sends the reason as an ephemeral follow-up (now a
message of its own), and only then deletes the public placeholder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import cast

import discord

from bot import render
from bot.context import BotContext
from bot.queue_refresh import remember_waiting
from bot.services.checks import precheck_prompt
from bot.services.errors import Refused
from bot.services.requests import ImageInput, Requester, Submission
from bot.services.submit import record_refusal
from core.metrics import metrics

log = logging.getLogger(__name__)


def bot_of(interaction: discord.Interaction) -> BotContext:
    """The bot that received the interaction, with its dependencies."""
    return cast("BotContext", interaction.client)


def requester_from(interaction: discord.Interaction) -> Requester:
    """Who asks, from where, and the interaction that idempotency and delivery hang on."""
    roles: tuple[int, ...] = ()
    if isinstance(interaction.user, discord.Member):
        roles = tuple(role.id for role in interaction.user.roles)
    return Requester(
        user_id=interaction.user.id,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        role_ids=roles,
        interaction_id=interaction.id,
        interaction_token=interaction.token,
        interaction_created_at=interaction.created_at,
    )


ACK_MESSAGE_KEY = "imaginarium_ack_message_id"
"""Where :func:`defer_public` keeps the deferral's message id (``interaction.extras``)."""
WITHDRAWN_TEXT = "This request was not queued."
"""What the public placeholder says for the moment between a refusal and its deletion."""


async def defer_public(interaction: discord.Interaction) -> None:
    """Acknowledge with a public "thinking…" message and remember that message's id."""
    callback = await interaction.response.defer(thinking=True)
    message_id = getattr(callback, "message_id", None)
    if message_id is not None:
        interaction.extras[ACK_MESSAGE_KEY] = message_id


async def refuse(interaction: discord.Interaction, refusal: Refused | str) -> None:
    """Explain a refusal to the user alone, and remove a public acknowledgement if one was made."""
    message = refusal.message if isinstance(refusal, Refused) else refusal
    if isinstance(refusal, Refused):
        metrics().refusals.labels(refusal.reason.value).inc()
    if not interaction.response.is_done():
        await interaction.response.send_message(message, ephemeral=True)
        return
    if ACK_MESSAGE_KEY not in interaction.extras:
        # An ephemeral deferral or a silent one (a button's): a follow-up reaches the user alone.
        await interaction.followup.send(message, ephemeral=True)
        return
    try:
        await interaction.edit_original_response(content=WITHDRAWN_TEXT, embed=None, view=None)
    except discord.HTTPException as exc:
        log.info("could not resolve a deferral before refusing (%s)", exc.status)
    await interaction.followup.send(message, ephemeral=True)
    with contextlib.suppress(discord.NotFound):
        await interaction.delete_original_response()
    del interaction.extras[ACK_MESSAGE_KEY]


FAILURE_MESSAGE = "Something went wrong on our side; nothing was charged. Please try again."


async def report_error(interaction: discord.Interaction, message: str = FAILURE_MESSAGE) -> None:
    """Tell the user (alone) that something failed, however far the interaction got."""
    with contextlib.suppress(discord.HTTPException):
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True)
        else:
            await interaction.response.send_message(message, ephemeral=True)


async def acknowledge(
    interaction: discord.Interaction,
    submission: Submission,
    *,
    title: str = "Imagine",
    on_behalf_of: int | None = None,
    view: discord.ui.View | None = None,
) -> None:
    """Turn the "thinking…" acknowledgement into the queued job's recipe and place in the queue.

    The message becomes the job's: progress edits and the result land on it (delivery
    remembers it so it can also reply to it once the interaction token has expired).

    Args:
        view: the buttons under it (a cancel button, from ``bot.views.buttons.queued_view``).
    """
    bot = bot_of(interaction)
    first = submission.jobs[0]
    deferred_id = interaction.extras.get(ACK_MESSAGE_KEY)
    if submission.created and deferred_id is not None and interaction.channel_id is not None:
        # Remembered before the edit below: if the token is refused from now on, the result
        # is still posted, as a channel message replying to this one.
        await bot.delivery.acks.remember(
            first.job_id,
            channel_id=interaction.channel_id,
            message_id=int(deferred_id),
            size_limit=interaction.filesize_limit,
        )
    # A fast worker can finish before this edit is sent: the result must not be replaced
    # by the "queued" text, so this edit and the delivery of the job take turns.
    async with bot.delivery.job_lock(first.job_id):
        if await bot.delivery.is_delivered(first.job_id):
            return
        content = render.queued_text(submission, user_id=interaction.user.id, title=title, on_behalf_of=on_behalf_of)
        try:
            message = await interaction.edit_original_response(
                content=content,
                embed=render.recipe_embed(first),
                view=view if view is not None else discord.utils.MISSING,
            )
        except discord.HTTPException as exc:
            if exc.status not in (401, 403, 404):
                raise
            # The token was revoked or the message deleted: the job is queued and paid for,
            # and delivery posts its result in the channel.
            log.info("job %s: the queued message could not be shown (%s)", first.job_id, exc.status)
            return
    if submission.created and len(submission.jobs) == 1 and first.position:
        # Its place in the queue is kept up to date while it waits (bot.queue_refresh).
        await remember_waiting(bot.redis, first.job_id, content)
    if submission.created and deferred_id is None:
        await bot.delivery.acks.remember(
            first.job_id,
            channel_id=message.channel.id,
            message_id=message.id,
            size_limit=interaction.filesize_limit,
        )


async def refused_before_deferring(
    interaction: discord.Interaction, text: str, images: Sequence[ImageInput] = ()
) -> bool:
    """Answer what can be refused without I/O as the interaction's first response (ephemeral),
    keep its moderation record, and say whether it was refused."""
    bot = bot_of(interaction)
    try:
        precheck_prompt(
            catalog=bot.catalog, text=text, images=images, banned=bot.banned_words.get(interaction.guild_id),
            image_hosts=bot.image_hosts,
        )
    except Refused as refusal:
        await refuse(interaction, refusal)
        await record_refusal(sessions=bot.sessions, requester=requester_from(interaction), refusal=refusal)
        return True
    return False
