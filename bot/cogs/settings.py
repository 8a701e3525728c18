"""``/settings``: a user's defaults as select menus and toggle buttons.

The menus and buttons are ``DynamicItem`` s whose custom id names only the setting
(``set:v1:<name>``): the user is whoever clicks, so they need no state of their own and keep
working after a restart.
"""

from __future__ import annotations

import logging
import re
from typing import Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.context import BotContext
from bot.replies import bot_of, report_error
from bot.services.user_settings import (
    ASPECT_CHOICES,
    STYLIZE_CHOICES,
    UserSettings,
    change_user_settings,
    get_user_settings,
)
from core.models import ModelCatalog
from core.spec import Lane

log = logging.getLogger(__name__)

_DEFAULT = "default"


def settings_text(settings: UserSettings) -> str:
    """What the settings message says above its menus."""
    return (
        "**Your settings** — they apply to new jobs; a flag in a prompt always wins.\n"
        f"Remix mode is **{'on' if settings.remix else 'off'}** (edit the prompt before a variation). "
        f"Private mode is **{'on' if settings.private else 'off'}** (keep new jobs out of the gallery)."
    )


def settings_view(settings: UserSettings, catalog: ModelCatalog) -> discord.ui.View:
    """Four menus (model, aspect ratio, stylize, lane) and two toggles (remix, private)."""
    view = discord.ui.View(timeout=None)
    view.add_item(SettingSelect("model", settings, catalog))
    view.add_item(SettingSelect("ar", settings, catalog))
    view.add_item(SettingSelect("stylize", settings, catalog))
    view.add_item(SettingSelect("lane", settings, catalog))
    view.add_item(SettingToggle("remix", settings.remix))
    view.add_item(SettingToggle("private", settings.private))
    return view


def _options(name: str, settings: UserSettings, catalog: ModelCatalog) -> list[discord.SelectOption]:
    def option(label: str, value: str, current: object) -> discord.SelectOption:
        return discord.SelectOption(label=label, value=value, default=str(current) == value)

    if name == "model":
        current_model = settings.model or _DEFAULT
        options = [option(f"Server default ({catalog.default_name})", _DEFAULT, current_model)]
        options += [option(f"Model: {m}", m, current_model) for m in catalog.names()[:24]]
        return options
    if name == "ar":
        return [option(f"Aspect ratio {a}", a, settings.aspect_ratio or "1:1") for a in ASPECT_CHOICES]
    if name == "stylize":
        current = settings.stylize if settings.stylize is not None else 100
        return [option(f"Stylize {s}", str(s), current) for s in STYLIZE_CHOICES]
    lane = (settings.lane or Lane.FAST).value
    return [
        option("Fast lane (uses credits)", Lane.FAST.value, lane),
        option("Relax lane (free, slower)", Lane.RELAX.value, lane),
    ]


class SettingSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]], template=r"set:v1:(?P<name>model|ar|stylize|lane)"
):
    """A menu for one setting."""

    def __init__(
        self, name: str, settings: UserSettings | None = None, catalog: ModelCatalog | None = None
    ) -> None:
        options = _options(name, settings, catalog) if settings is not None and catalog is not None else []
        super().__init__(
            discord.ui.Select(
                custom_id=f"set:v1:{name}",
                options=options or [discord.SelectOption(label=name, value=name)],
                min_values=1,
                max_values=1,
            )
        )
        self.name = name

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingSelect:
        return cls(match["name"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._choose(interaction)
        except Exception:
            log.exception("changing setting %s failed", self.name)
            await report_error(interaction)

    async def _choose(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        value = self.item.values[0] if self.item.values else _DEFAULT
        change: dict[str, Any]
        if self.name == "model":
            change = {"model": None if value == _DEFAULT else value}
        elif self.name == "ar":
            change = {"aspect_ratio": None if value == "1:1" else value}
        elif self.name == "stylize":
            change = {"stylize": int(value)}
        else:
            change = {"lane": Lane(value)}
        await _apply(interaction, change)


class SettingToggle(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"set:v1:(?P<name>remix|private)"
):
    """An on/off button for one setting."""

    def __init__(self, name: str, on: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"{'Remix' if name == 'remix' else 'Private'} mode: {'on' if on else 'off'}",
                style=discord.ButtonStyle.success if on else discord.ButtonStyle.secondary,
                custom_id=f"set:v1:{name}",
            )
        )
        self.name = name

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SettingToggle:
        return cls(match["name"])

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._toggle(interaction)
        except Exception:
            log.exception("toggling setting %s failed", self.name)
            await report_error(interaction)

    async def _toggle(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        bot = bot_of(interaction)
        async with bot.sessions() as session:
            current = await get_user_settings(session=session, discord_user_id=interaction.user.id)
        await _apply(interaction, {self.name: not getattr(current, self.name)})


async def _apply(interaction: discord.Interaction, change: dict[str, Any]) -> None:
    bot = bot_of(interaction)
    if change.get("model") is not None and change["model"] not in bot.catalog:
        await interaction.followup.send(f"There is no model `{change['model']}` any more.", ephemeral=True)
        return
    async with bot.sessions() as session, session.begin():
        settings = await change_user_settings(session=session, discord_user_id=interaction.user.id, **change)
    await interaction.edit_original_response(
        content=settings_text(settings), view=settings_view(settings, bot.catalog)
    )


SETTINGS_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (SettingSelect, SettingToggle)
"""The persistent items to register with the bot."""


class SettingsCog(commands.Cog):
    """Per-user defaults."""

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot

    @app_commands.command(name="settings")
    async def settings(self, interaction: discord.Interaction) -> None:
        """Your defaults: model, aspect ratio, stylize, lane, remix and private mode."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.sessions() as session, session.begin():
            current = await get_user_settings(session=session, discord_user_id=interaction.user.id)
        await interaction.edit_original_response(
            content=settings_text(current), view=settings_view(current, self.bot.catalog)
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SettingsCog(cast("BotContext", bot)))
