"""The steps every command and button shares: who is asking, acknowledging, refusing.

The pattern (from the style guide): a callback defers, calls a service, and renders what it
returned. A public "thinking" acknowledgement is made first, so the 3-second rule holds
whatever the database does; a refusal then deletes that acknowledgement and explains itself
in an ephemeral message, so only the user sees that nothing happened.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, cast

import discord

from bot import render
from bot.services.errors import Refused
from bot.services.submit import Requester, Submission

if TYPE_CHECKING:
    from bot.app import ImaginariumBot

log = logging.getLogger(__name__)


def bot_of(interaction: discord.Interaction) -> ImaginariumBot:
    """The bot that received the interaction, with its dependencies."""
    return cast("ImaginariumBot", interaction.client)


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


async def refuse(interaction: discord.Interaction, refusal: Refused | str) -> None:
    """Explain a refusal to the user alone, and remove a public acknowledgement if one was made."""
    message = refusal.message if isinstance(refusal, Refused) else refusal
    if not interaction.response.is_done():
        await interaction.response.send_message(message, ephemeral=True)
        return
    if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        # The public "thinking…" message would otherwise stay, or show the refusal to all.
        with contextlib.suppress(discord.NotFound):
            await interaction.delete_original_response()
    await interaction.followup.send(message, ephemeral=True)


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
    # A fast worker can finish before this edit is sent: the result must not be replaced
    # by the "queued" text, so this edit and the delivery of the job take turns.
    async with bot.delivery.job_lock(first.job_id):
        if await bot.delivery.is_delivered(first.job_id):
            return
        message = await interaction.edit_original_response(
            content=render.queued_text(
                submission, user_id=interaction.user.id, title=title, on_behalf_of=on_behalf_of
            ),
            embed=render.recipe_embed(first),
            view=view if view is not None else discord.utils.MISSING,
        )
    if submission.created:
        await bot.delivery.acks.remember(
            first.job_id,
            channel_id=message.channel.id,
            message_id=message.id,
            size_limit=interaction.filesize_limit,
        )
