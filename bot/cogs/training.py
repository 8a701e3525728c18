"""``/train`` (a LoRA from a member's pictures) and ``/lora list|share|delete``.

``/train`` reads the pictures (up to ten attachments, or a zip of 5-40 with optional
``.txt`` captions), checks everything (:func:`bot.services.training.prepare_training`) and
answers the member alone with the cost and a Start button; Start queues the training
(:func:`bot.services.training.start_training`) as a public job message with progress, Cancel
and, when done, four samples drawn with the new LoRA. The LoRA is its trainer's (private)
until an admin shares it with the server.
"""

from __future__ import annotations

from typing import Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.autocomplete import model_autocomplete
from bot.context import BotContext
from bot.replies import acknowledge, bot_of, defer_public, refuse, requester_from
from bot.services.errors import RefusalReason, Refused
from bot.services.training import PreparedTraining, prepare_training, start_training
from bot.views.buttons import queued_view
from core.training import MAX_IMAGE_BYTES, MAX_ZIP_BYTES, Picture, TrainingRefused, read_picture, unpack_zip
from db.repositories import guild_by_discord_id, upsert_user
from db.repositories import trained_loras as loras

START_TIMEOUT_S = 15 * 60
_NO_MENTIONS = discord.AllowedMentions.none()


async def read_pictures(archive: discord.Attachment | None, files: list[discord.Attachment]) -> list[Picture]:
    """The pictures of the attachments and the zip, checked one by one.

    Raises:
        Refused: a file too large, not a picture, or a zip that is not one.
    """
    pictures: list[Picture] = []
    try:
        if archive is not None:
            if archive.size > MAX_ZIP_BYTES:
                raise TrainingRefused(f"The zip is larger than {MAX_ZIP_BYTES // (1024 * 1024)} MB.")
            pictures += unpack_zip(await archive.read())
        for attachment in files:
            if attachment.size > MAX_IMAGE_BYTES:
                raise TrainingRefused(f"`{attachment.filename}` is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
            pictures.append(read_picture(await attachment.read(), attachment.filename))
    except TrainingRefused as exc:
        raise Refused(f"{exc} Nothing was charged.", reason=RefusalReason.INPUT) from None
    except discord.HTTPException:
        raise Refused("I could not download your pictures from Discord; try again. Nothing was charged.",
                      reason=RefusalReason.INPUT) from None
    return pictures


def cost_text(prepared: PreparedTraining) -> str:
    return (
        f"**Train LoRA `{prepared.name}`** on `{prepared.model}` from {len(prepared.pictures)} pictures "
        f"({prepared.kind.value}, trigger word `{prepared.trigger}`): {prepared.steps:,} steps, "
        f"**{prepared.cost} credits** (you have {prepared.balance}). It is yours alone until an admin shares it."
    )


class StartTraining(discord.ui.View):
    """The Start / Cancel buttons under a prepared training (its owner's alone)."""

    def __init__(self, prepared: PreparedTraining, owner: int) -> None:
        super().__init__(timeout=START_TIMEOUT_S)
        self.prepared = prepared
        self.owner = owner
        self.done = False
        start: discord.ui.Button[Any] = discord.ui.Button(
            label=f"Start training — {prepared.cost} credits", style=discord.ButtonStyle.success
        )
        stop: discord.ui.Button[Any] = discord.ui.Button(label="Cancel", style=discord.ButtonStyle.secondary)
        start.callback = self._start  # type: ignore[method-assign]
        stop.callback = self._cancel  # type: ignore[method-assign]
        self.add_item(start)
        self.add_item(stop)

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner:
            await interaction.response.send_message("Only the member who asked can start this training.",
                                                    ephemeral=True)
            return False
        return True

    async def _start(self, interaction: discord.Interaction) -> None:
        if self.done:
            await interaction.response.send_message("This training was started or cancelled already.", ephemeral=True)
            return
        self.done = True
        self.stop()
        bot = bot_of(interaction)
        await defer_public(interaction)
        try:
            submission = await start_training(
                sessions=bot.sessions, publisher=bot.publisher, catalog=bot.catalog,
                requester=requester_from(interaction), prepared=self.prepared,
            )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await acknowledge(interaction, submission, title=f"Train LoRA `{self.prepared.name}`",
                          view=queued_view(submission.jobs[0].job_id))

    async def _cancel(self, interaction: discord.Interaction) -> None:
        self.done = True
        self.stop()
        await interaction.response.edit_message(content="Training cancelled; nothing was charged.", view=None)


class TrainingCog(commands.Cog):
    """Members' LoRAs."""

    lora = app_commands.Group(name="lora", description="Your trained LoRAs")

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot

    @app_commands.command(name="train")
    @app_commands.describe(
        name="What to call the LoRA (use it with --lora NAME)",
        trigger="A made-up word your prompts use to call it up (e.g. zorbl)",
        kind="What it learns: a subject, a face, or a style",
        pictures="A zip of 5-40 pictures (optional .txt captions beside each)",
        picture1="A picture (or give a zip)", picture2="A picture", picture3="A picture", picture4="A picture",
        picture5="A picture", picture6="A picture", picture7="A picture", picture8="A picture",
        picture9="A picture", picture10="A picture",
        model="The model to train on (SD 1.5 or SDXL; default: the server's)",
        steps="Training steps, 100-4000 (default: 250 a picture); the cost follows",
    )
    @app_commands.choices(kind=[app_commands.Choice(name=k.title(), value=k) for k in ("subject", "face", "style")])
    @app_commands.autocomplete(model=model_autocomplete)
    async def train(
        self, interaction: discord.Interaction, name: app_commands.Range[str, 1, 40],
        trigger: app_commands.Range[str, 1, 32], kind: str = "subject", pictures: discord.Attachment | None = None,
        picture1: discord.Attachment | None = None, picture2: discord.Attachment | None = None,
        picture3: discord.Attachment | None = None, picture4: discord.Attachment | None = None,
        picture5: discord.Attachment | None = None, picture6: discord.Attachment | None = None,
        picture7: discord.Attachment | None = None, picture8: discord.Attachment | None = None,
        picture9: discord.Attachment | None = None, picture10: discord.Attachment | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        steps: app_commands.Range[int, 100, 4000] | None = None,
    ) -> None:
        """Teach a model your subject, face or style from 5-40 pictures (a LoRA)."""
        files = [a for a in (picture1, picture2, picture3, picture4, picture5, picture6, picture7, picture8,
                             picture9, picture10) if a is not None]
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            read = await read_pictures(pictures, files)
            prepared = await prepare_training(
                sessions=self.bot.sessions, catalog=self.bot.catalog, requester=requester_from(interaction),
                name=name, trigger=trigger, kind=kind, model=model, pictures=read, workers=self.bot.workers,
                steps=steps,
            )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await interaction.followup.send(cost_text(prepared), view=StartTraining(prepared, interaction.user.id),
                                        ephemeral=True, allowed_mentions=_NO_MENTIONS)

    @lora.command(name="list")
    async def list_loras(self, interaction: discord.Interaction) -> None:
        """Your LoRAs here, and those shared with this server."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.sessions() as session:
            user = await upsert_user(session=session, discord_id=interaction.user.id)
            guild_id = await self._guild_id(session, interaction)
            mine = await loras.loras_of(session=session, user_id=user.id, guild_id=guild_id)
            usable = await loras.usable_loras(session=session, user_id=user.id, guild_id=guild_id)
            await session.commit()
        lines = [f"`{r.name}` · trigger `{r.trigger}` · {r.model} · {r.status}{' · shared' if r.shared else ''}"
                 for r in mine]
        shared = [f"`{u.name}` · trigger `{u.trigger}` · {u.model}" for u in usable if not u.owned]
        text = ("**Your LoRAs**\n" + "\n".join(lines) if lines else "You have trained no LoRA here; try `/train`.")
        if shared:
            text += "\n**Shared with this server**\n" + "\n".join(shared)
        await interaction.edit_original_response(content=text[:2000], allowed_mentions=_NO_MENTIONS)

    @lora.command(name="share")
    @app_commands.describe(name="The LoRA", shared="Share it (or stop sharing it)")
    async def share(self, interaction: discord.Interaction, name: str, shared: bool = True) -> None:
        """Let every member of this server use a LoRA (Manage Server)."""
        if interaction.guild_id is None or not interaction.permissions.manage_guild:
            await refuse(interaction, "Sharing a LoRA with the server needs the Manage Server permission.")
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.sessions() as session, session.begin():
            row = await loras.lora_named(session=session, guild_id=await self._guild_id(session, interaction),
                                         name=name)
            if row is None or row.status != "ready":
                message = f"There is no ready LoRA `{name}` in this server."
            else:
                await loras.set_shared(session=session, lora_id=row.id, shared=shared)
                message = f"`{row.name}` is {'now shared with' if shared else 'no longer shared with'} this server."
        await interaction.edit_original_response(content=message, allowed_mentions=_NO_MENTIONS)

    @lora.command(name="delete")
    @app_commands.describe(name="The LoRA")
    async def delete(self, interaction: discord.Interaction, name: str) -> None:
        """Delete one of your LoRAs (admins: any of this server's)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self.bot.sessions() as session, session.begin():
            user = await upsert_user(session=session, discord_id=interaction.user.id)
            row = await loras.lora_named(session=session, guild_id=await self._guild_id(session, interaction),
                                         name=name)
            admin = interaction.guild_id is not None and interaction.permissions.manage_guild
            if row is None or (row.user_id != user.id and not admin):
                message = f"You have no LoRA `{name}` here."
            elif row.status == "training":
                message = f"`{row.name}` is still training; cancel its job first."
            else:
                await loras.delete_lora(session=session, lora_id=row.id)
                message = (f"Deleted `{row.name}` and its training pictures; its file is removed from storage "
                           "shortly, and no new job (nor a button under an earlier image) can use it.")
        await interaction.edit_original_response(content=message, allowed_mentions=_NO_MENTIONS)

    async def _guild_id(self, session: Any, interaction: discord.Interaction) -> int | None:
        if interaction.guild_id is None:
            return None
        guild = await guild_by_discord_id(session=session, discord_id=interaction.guild_id)
        return guild.id if guild is not None else -1  # a server with no row has no LoRAs


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(TrainingCog(cast("BotContext", bot)))
