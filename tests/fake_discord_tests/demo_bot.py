"""A small real discord.py bot that exercises every path of the fake Discord.

Run in-process by the tests, or as ``python -m tests.fake_discord_tests.demo_bot`` with
``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL`` and ``DISCORD_TOKEN`` set (as the e2e tests
run the real bot in another process).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import signal
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.discord_endpoints import configure_endpoints
from core.settings import load_settings


def png_bytes(color: str = "red", size: tuple[int, int] = (8, 8)) -> bytes:
    """A tiny PNG image."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class AgainButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"demo:v1:again:(?P<count>[0-9]+)"
):
    """Persistent button: edits the message it is on in place (response type 7)."""

    def __init__(self, count: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"Again ({count})",
                style=discord.ButtonStyle.primary,
                emoji="🔁",
                custom_id=f"demo:v1:again:{count}",
            )
        )
        self.count = count

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AgainButton:
        return cls(int(match["count"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(
            content=f"pong #{self.count + 1}", view=ping_view(self.count + 1)
        )


class DoneButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"demo:v1:done"):
    """Persistent button: acknowledges first (type 6), then edits @original through the webhook."""

    def __init__(self) -> None:
        super().__init__(
            discord.ui.Button(label="Done", style=discord.ButtonStyle.success, custom_id="demo:v1:done")
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DoneButton:
        return cls()

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="done", view=None)


def ping_view(count: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AgainButton(count))
    view.add_item(DoneButton())
    return view


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    """A modal with one required text input."""

    text: discord.ui.TextInput[FeedbackModal] = discord.ui.TextInput(
        label="What do you think?", custom_id="demo:text"
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


FLAVOURS = ["vanilla", "chocolate", "strawberry", "pistachio"]


class DemoBot(commands.AutoShardedBot):
    """The demo bot; ``errors`` collects exceptions its commands caught, for the tests to read."""

    def __init__(self) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.1,
        )
        self.errors: list[Exception] = []
        add_commands(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AgainButton, DoneButton)
        await self.tree.sync()


def add_commands(bot: DemoBot) -> None:
    tree = bot.tree

    @tree.command(name="ping")
    @app_commands.describe(text="Something to echo")
    async def ping(interaction: discord.Interaction, text: str = "") -> None:
        """Reply with a picture and buttons."""
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(
            f"pong {text}".strip(), file=discord.File(io.BytesIO(png_bytes()), "pong.png"), view=ping_view(1)
        )

    @tree.command(name="upload")
    async def upload(interaction: discord.Interaction, image: discord.Attachment) -> None:
        """Download the attachment and describe it."""
        await interaction.response.defer(ephemeral=True)
        data = await image.read()
        digest = hashlib.sha256(data).hexdigest()
        await interaction.followup.send(f"{image.filename} {len(data)} {image.width}x{image.height} {digest}")

    @tree.command(name="post")
    async def post(interaction: discord.Interaction, text: str) -> None:
        """Post in the channel, edit it and react to it."""
        await interaction.response.send_message("posting", ephemeral=True)
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send(
            text, file=discord.File(io.BytesIO(png_bytes("blue")), "SPOILER_post.png")
        )
        await message.edit(content=f"{text} (edited)")
        await message.add_reaction("✅")

    @tree.command(name="later")
    async def later(interaction: discord.Interaction, seconds: float) -> None:
        """Defer, wait, then follow up (or fall back to a channel message if the token died)."""
        await interaction.response.defer()
        await asyncio.sleep(seconds)
        try:
            await interaction.followup.send("finally")
        except discord.HTTPException as exc:
            bot.errors.append(exc)
            channel = interaction.channel
            assert isinstance(channel, discord.TextChannel)
            await channel.send(f"{interaction.user.mention} finally (token expired: {exc.code})")

    @tree.command(name="feedback")
    async def feedback(interaction: discord.Interaction) -> None:
        """Open a modal."""
        await interaction.response.send_modal(FeedbackModal())

    @tree.command(name="pick")
    @app_commands.choices(
        size=[app_commands.Choice(name="small", value=1), app_commands.Choice(name="big", value=2)]
    )
    async def pick(interaction: discord.Interaction, flavour: str, size: app_commands.Choice[int]) -> None:
        """Pick an ice cream."""
        await interaction.response.send_message(f"{size.name} {flavour}")

    @pick.autocomplete("flavour")
    async def pick_flavour(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=f, value=f) for f in FLAVOURS if f.startswith(current)]

    settings = app_commands.Group(name="settings", description="Your settings")

    @settings.command(name="show")
    async def settings_show(
        interaction: discord.Interaction, member: discord.Member, public: bool = False
    ) -> None:
        """Show a member's settings."""
        await interaction.response.send_message(f"settings of {member.name}", ephemeral=not public)

    tree.add_command(settings)


async def main() -> None:
    """Run the demo bot against the endpoints in the environment until SIGTERM."""
    settings = load_settings()
    configure_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    token = settings.require("discord_token").get_secret_value()
    async with DemoBot() as demo:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(demo.close()))
        await demo.start(token)


if __name__ == "__main__":
    asyncio.run(main())
