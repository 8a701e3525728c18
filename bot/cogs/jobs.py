"""``/info``, ``/queue``, ``/show`` and ``/models``: a user's jobs and what the bot offers."""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.context import BotContext
from bot.replies import defer_public, refuse
from bot.services import jobs as job_service
from bot.services.errors import RefusalReason, Refused
from bot.views.buttons import queue_view
from db.models import JobStatus
from db.repositories import guild_by_discord_id, guild_by_id


class JobsCog(commands.Cog):
    """Looking at and managing one's jobs."""

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot

    @app_commands.command(name="info")
    async def info(self, interaction: discord.Interaction) -> None:
        """Your credits, lane and running and queued jobs."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        overview = await job_service.user_overview(
            sessions=self.bot.sessions, discord_user_id=interaction.user.id
        )
        await interaction.edit_original_response(content=render.overview_text(overview))

    @app_commands.command(name="queue")
    async def queue(self, interaction: discord.Interaction) -> None:
        """Your queued and running jobs, with buttons to cancel or stop them."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        overview = await job_service.user_overview(
            sessions=self.bot.sessions, discord_user_id=interaction.user.id
        )
        await interaction.edit_original_response(
            content=render.queue_text(overview), view=queue_view(overview)
        )

    @app_commands.command(name="show")
    @app_commands.describe(job_id="The job id (shown under each result)")
    async def show(self, interaction: discord.Interaction, job_id: str) -> None:
        """Post one of your jobs again, with working buttons."""
        await defer_public(interaction)
        try:
            job = await job_service.own_job(
                sessions=self.bot.sessions,
                discord_user_id=interaction.user.id,
                job_id=job_service.parse_job_id(job_id),
            )
            if job.status not in (JobStatus.DONE, JobStatus.FAILED):
                raise Refused(
                    f"That job is {job.status.value}; its result will be posted when it is done.",
                    reason=RefusalReason.STATE,
                )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        async with self.bot.sessions() as session:
            guild = await guild_by_id(session=session, guild_id=job.guild_id)
        prepared = await self.bot.delivery.prepare(
            job, owner=interaction.user.id, guild=guild, size_limit=interaction.filesize_limit
        )
        await interaction.edit_original_response(
            content=prepared.content,
            attachments=prepared.files,
            view=prepared.view if prepared.view is not None else discord.utils.MISSING,
        )

    @app_commands.command(name="models")
    async def models(self, interaction: discord.Interaction) -> None:
        """The models you can use here."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        allowed: list[str] = []
        if interaction.guild_id is not None:
            async with self.bot.sessions() as session:
                guild = await guild_by_discord_id(session=session, discord_id=interaction.guild_id)
                allowed = list(guild.allowed_models or []) if guild is not None else []
        await interaction.edit_original_response(content=render.models_text(self.bot.catalog, allowed, await self.bot.workers.live()))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(JobsCog(cast("BotContext", bot)))
