"""``/gallery``: browse the images members published in this server."""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.autocomplete import model_autocomplete
from bot.context import BotContext
from bot.replies import refuse
from bot.services import gallery as gallery_service
from bot.services.errors import Refused
from bot.services.gallery import GalleryMode
from bot.views.gallery import GALLERY_ITEMS, show_page


@app_commands.guild_only()
class GalleryCog(commands.GroupCog, group_name="gallery", group_description="Browse this server's gallery"):
    """The server gallery: recent, most liked, search, by member, by model."""

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="recent")
    async def recent(self, interaction: discord.Interaction) -> None:
        """The newest published images."""
        await self._show(interaction, GalleryMode.RECENT)

    @app_commands.command(name="top")
    async def top(self, interaction: discord.Interaction) -> None:
        """The most liked images."""
        await self._show(interaction, GalleryMode.TOP)

    @app_commands.command(name="search")
    @app_commands.describe(words="Words in the prompt, e.g. red fox")
    async def search(self, interaction: discord.Interaction, words: app_commands.Range[str, 1, 200]) -> None:
        """Images whose prompts have these words."""
        await self._show(interaction, GalleryMode.SEARCH, text=words)

    @app_commands.command(name="user")
    @app_commands.describe(member="Whose images to show")
    async def user(self, interaction: discord.Interaction, member: discord.User) -> None:
        """Images a member published."""
        await self._show(interaction, GalleryMode.USER, user_id=member.id)

    @app_commands.command(name="model")
    @app_commands.describe(model="The model that made them")
    @app_commands.autocomplete(model=model_autocomplete)
    async def model(self, interaction: discord.Interaction, model: app_commands.Range[str, 1, 100]) -> None:
        """Images made with one model."""
        await self._show(interaction, GalleryMode.MODEL, text=model)

    async def _show(
        self,
        interaction: discord.Interaction,
        mode: GalleryMode,
        *,
        text: str | None = None,
        user_id: int | None = None,
    ) -> None:
        # Browsing is personal: the pages (and their ❤ buttons) are the viewer's alone.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            async with self.bot.sessions() as session, session.begin():
                filter = await gallery_service.open_filter(
                    session=session, mode=mode, text=text, user_discord_id=user_id
                )
                page = await gallery_service.gallery_page(
                    session=session,
                    guild_discord_id=interaction.guild_id or 0,
                    filter=filter,
                    viewer_discord_id=interaction.user.id,
                )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await show_page(interaction, page)


async def setup(bot: commands.Bot) -> None:
    bot.add_dynamic_items(*GALLERY_ITEMS)
    await bot.add_cog(GalleryCog(cast("BotContext", bot)))
