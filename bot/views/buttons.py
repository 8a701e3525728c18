"""The persistent buttons under results, and what a click does.

Every button is a :class:`JobButton` (a ``DynamicItem``) whose custom id carries the action,
the job id and the image index only, and the state is read from the database when it is
clicked, so a button on a message from last year works after any number of restarts. A
click is answered (deferred) before that read, so Discord's 3-second rule holds however
slow the database is; only a remix form, which must be the first response, reads first.

Someone else's button: publish, delete and cancel belong to the job's owner, and anyone
else gets an ephemeral explanation. Every other button works for anyone and makes a copy of
the action on the clicker's own credits; the acknowledgement says so.

Longer than 400 lines on purpose: the buttons, the forms they open (remix, Custom Zoom) and
the region menu dispatch to one another, and split apart they would import each other.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

import discord

from bot import render
from bot.drawing import send_editor_link
from bot.render import ButtonSpec
from bot.replies import (
    acknowledge,
    bot_of,
    defer_public,
    refuse,
    refused_before_deferring,
    report_error,
    requester_from,
)
from bot.services import images as image_service
from bot.services import jobs as job_service
from bot.services.errors import RefusalReason, Refused
from bot.services.submit import submit_action
from bot.views.actions import BUTTON_TEMPLATE, REGION_TEMPLATE, REGIONS, Action, button_action, custom_id
from bot.views.click_state import job_prompt, load_click_state, remix_prompt
from core import kinds
from core.errors import PromptError
from core.flags import read_controls
from core.kinds import Recipe, split_custom_zoom
from core.spec import ControlRef, JobKind, JobSpec
from db.models import Job
from db.repositories import guild_by_id

log = logging.getLogger(__name__)


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=BUTTON_TEMPLATE):
    """A button under a job's message (see :class:`~bot.views.actions.Action`)."""

    def __init__(self, job_id: uuid.UUID, spec: ButtonSpec) -> None:
        super().__init__(
            discord.ui.Button(
                label=spec.label,
                emoji=spec.emoji,
                style=spec.style,
                row=spec.row,
                custom_id=custom_id(spec.action, job_id, spec.index),
            )
        )
        self.job_id = job_id
        self.action = spec.action
        self.index = spec.index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        job_id = uuid.UUID(match["job"])
        # Keep the look of the clicked button: a view redrawn from this item shows the same.
        label, emoji, style = None, None, discord.ButtonStyle.secondary
        if isinstance(item, discord.ui.Button):
            label, emoji, style = item.label, str(item.emoji) if item.emoji else None, item.style
        spec = ButtonSpec(match["action"], int(match["index"]), label, emoji, style)
        # No I/O here: the callback answers (or defers) first, then reads the database.
        return cls(job_id, spec)

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await handle_click(interaction, self.action, self.job_id, self.index)
        except Exception:
            # discord.py only logs errors of dynamic items; the user must hear of it too.
            log.exception("button %s on job %s failed", self.action, self.job_id)
            await report_error(interaction)


def build_view(buttons: Sequence[tuple[uuid.UUID, ButtonSpec]]) -> discord.ui.View:
    """A view of job buttons (never timing out: the buttons are dispatched by custom id)."""
    view = discord.ui.View(timeout=None)
    for job_id, spec in buttons:
        view.add_item(JobButton(job_id, spec))
    return view


def queued_view(job_id: uuid.UUID) -> discord.ui.View:
    """The cancel button on a queued job's message."""
    return build_view([(job_id, b) for b in render.queued_buttons()])


def single_image_view(job_id: uuid.UUID, index: int, *, public: bool) -> discord.ui.View:
    return build_view([(job_id, b) for b in render.single_image_buttons(index, public=public)])


# --------------------------------------------------------------------------- clicks


async def handle_click(interaction: discord.Interaction, code: str, job_id: uuid.UUID, index: int) -> None:
    """Do what the button says (see the module docstring for whose buttons do what).

    Every path answers the interaction before it reads the database, except a remix form,
    which must be the first response and shows the job's prompt (:func:`remix_prompt`).
    """
    try:
        action = button_action(code)
    except ValueError:
        await refuse(interaction, "That button is no longer supported.")
        return
    if isinstance(action, tuple) and action[0].asks_prompt:
        await interaction.response.send_modal(
            RemixModal(job_id=job_id, index=index, recipe=action[0], prompt="", instruction=True)
        )
        return
    if isinstance(action, tuple) and action[0].asks_controls:
        prompt = await job_prompt(interaction, job_id)
        if prompt is None:
            await refuse(interaction, "That job no longer exists.")
            return
        await interaction.response.send_modal(
            RemixModal(job_id=job_id, index=index, recipe=action[0], prompt=prompt, controls="canny")
        )
        return
    if isinstance(action, tuple) or action is Action.REROLL:
        recipe = action[0] if isinstance(action, tuple) else None
        if recipe is None or recipe.remixable:
            prompt = await remix_prompt(interaction, job_id)
            if prompt is not None:
                await interaction.response.send_modal(
                    RemixModal(job_id=job_id, index=index, recipe=recipe, prompt=prompt)
                )
                return
        await defer_public(interaction)
        state = await load_click_state(interaction, job_id)
        if state.job is None or state.owner_id is None:
            await refuse(interaction, "That job no longer exists.")
            return
        await queue_action(interaction, parent=state.job, owner_id=state.owner_id, recipe=recipe, index=index)
        return
    if action is Action.CUSTOM_ZOOM:
        prompt = await job_prompt(interaction, job_id)
        if prompt is None:
            await refuse(interaction, "That job no longer exists.")
            return
        await interaction.response.send_modal(
            RemixModal(job_id=job_id, index=index, recipe=None, prompt=f"{prompt} --zoom 2", custom_zoom=True)
        )
        return
    if action is Action.VARY_REGION:
        await interaction.response.send_message(
            "Which part of the image should be repainted?",
            view=region_view(job_id, index, drawable=bot_of(interaction).editor is not None),
            ephemeral=True,
        )
        return
    if action is Action.PICK:
        await defer_public(interaction)
    else:
        # The rest answer the clicker alone and may edit the message the button is on.
        await interaction.response.defer()
    state = await load_click_state(interaction, job_id)
    if state.job is None or state.owner_id is None:
        await refuse(interaction, "That job no longer exists.")
        return
    if action is Action.PICK:
        await show_image(interaction, state.job, state.owner_id, index)
        return
    try:
        if action is Action.FAVORITE:
            added = await image_service.toggle_favorite(
                sessions=bot_of(interaction).sessions,
                discord_user_id=interaction.user.id,
                job_id=job_id,
                index=index,
            )
            text = "❤️ Added to your favorites." if added else "Removed from your favorites."
            await interaction.followup.send(text, ephemeral=True)
        elif action is Action.PUBLISH:
            public = await image_service.toggle_published(
                sessions=bot_of(interaction).sessions,
                discord_user_id=interaction.user.id,
                job_id=job_id,
                index=index,
            )
            await interaction.edit_original_response(view=single_image_view(job_id, index, public=public))
            text = "🌐 Published to the server gallery." if public else "Taken out of the server gallery."
            await interaction.followup.send(text, ephemeral=True)
        elif action is Action.DELETE:
            await image_service.delete_result(
                sessions=bot_of(interaction).sessions, discord_user_id=interaction.user.id, job_id=job_id
            )
            await interaction.delete_original_response()
            await interaction.followup.send("🗑️ Deleted.", ephemeral=True)
        elif action is Action.CANCEL:
            await cancel_from_button(interaction, job_id, index, state.owner_id)
    except Refused as refusal:
        await refuse(interaction, refusal)


async def queue_action(
    interaction: discord.Interaction,
    *,
    parent: Job,
    owner_id: int,
    recipe: Recipe | None,
    index: int,
    remix_text: str | None = None,
    controls: tuple[ControlRef, ...] | None = None,
) -> None:
    """Queue the job a button (or the remix form, or the region menu) asks for, and acknowledge it.

    ``recipe`` None is a reroll (🔄) of ``parent``. The interaction must already be deferred
    with a public "thinking…" message.
    """
    bot = bot_of(interaction)
    try:
        submission = await submit_action(
            sessions=bot.sessions,
            publisher=bot.publisher,
            catalog=bot.catalog,
            requester=requester_from(interaction),
            parent_id=parent.id,
            recipe=recipe,
            index=None if recipe is None else index,
            remix_text=remix_text,
            controls=controls,
            workers=bot.workers,
        )
    except Refused as refusal:
        await refuse(interaction, refusal)
        return
    title = "Reroll" if recipe is None else render.describe_kind(recipe.kind, recipe.variant, index)
    await acknowledge(
        interaction,
        submission,
        title=title,
        on_behalf_of=owner_id,
        view=queued_view(submission.jobs[0].job_id),
    )


async def show_image(interaction: discord.Interaction, job: Job, owner_id: int, index: int) -> None:
    """U1-U4: post one image of a grid with the single-image buttons (free, no new job)."""
    bot = bot_of(interaction)
    image = next((img for img in job.images if img.index == index), None)
    if image is None:
        await refuse(interaction, f"Image #{index + 1} of that job is not available.")
        return
    policy = None
    if job.guild_id is not None:
        async with bot.sessions() as session:
            guild = await guild_by_id(session=session, guild_id=job.guild_id)
            policy = guild.nsfw_policy if guild is not None else None
    file, note = await bot.delivery.image_file(
        image.storage_key,
        stem=f"image_{str(job.id)[:8]}_{index + 1}",
        flagged=image.nsfw,
        policy=policy,
        in_dm=interaction.guild_id is None,
        channel_id=interaction.channel_id,
        size_limit=interaction.filesize_limit,
    )
    spec = JobSpec.from_dict(job.params)
    content = render.picked_text(
        spec, user_id=interaction.user.id, owner_id=owner_id, index=index, job_id=job.id
    )
    if note:
        content += f"\n{note}"
    await interaction.edit_original_response(
        content=content,
        attachments=[file] if file is not None else [],
        view=single_image_view(job.id, index, public=image.public),
    )


async def cancel_from_button(
    interaction: discord.Interaction, job_id: uuid.UUID, index: int, owner_id: int
) -> None:
    """Cancel a queued job, or stop a running one at its next step. On the job's own message
    a queued job's message says so at once (a running job's, once it has stopped: the
    delivery posts it); in /queue the list is redrawn."""
    bot = bot_of(interaction)
    if interaction.user.id != owner_id:
        raise Refused(
            f"Only <@{owner_id}>, who queued this job, can cancel it. Nothing was changed.",
            reason=RefusalReason.NOT_OWNER,
        )
    cancelled = await job_service.cancel_own_job(
        sessions=bot.sessions, redis=bot.redis, discord_user_id=interaction.user.id, job_id=job_id
    )
    if index == 0 and not cancelled.stopping:
        await interaction.edit_original_response(
            content=render.cancelled_text(cancelled.prompt, user_id=owner_id, refunded=cancelled.refunded),
            embed=None,
            view=None,
        )
    elif index != 0:
        overview = await job_service.user_overview(sessions=bot.sessions, discord_user_id=interaction.user.id)
        await interaction.edit_original_response(
            content=render.queue_text(overview), view=queue_view(overview)
        )
    if cancelled.stopping:
        await interaction.followup.send(
            f"Stopping `{job_id}` at its next step; the share of its credits not yet rendered "
            "comes back when it has stopped.",
            ephemeral=True,
        )
        return
    refund = f" {render.credits(cancelled.refunded)} refunded." if cancelled.refunded else ""
    await interaction.followup.send(
        f"Cancelled `{job_id}`.{refund} Balance: {render.credits(cancelled.balance)}.", ephemeral=True
    )


def queue_view(overview: job_service.Overview) -> discord.ui.View:
    """The stop and cancel buttons of ``/queue``."""
    return build_view(render.queue_list_buttons(overview.running, overview.queued))


# --------------------------------------------------------------------------- Vary (Region)


class RegionSelect(discord.ui.DynamicItem[discord.ui.Select[Any]], template=REGION_TEMPLATE):
    """Vary (Region): Discord has no drawing tool, so the mask is one of a few presets."""

    def __init__(self, job_id: uuid.UUID, index: int, *, drawable: bool = False) -> None:
        # "Draw…" answers with a link to the web gallery's mask editor, where there is one.
        options = [
            discord.SelectOption(label=label, value=value)
            for value, label in REGIONS.items()
            if value != kinds.DRAWN or drawable
        ]
        super().__init__(
            discord.ui.Select(
                custom_id=custom_id("rgn", job_id, index), placeholder="Region to repaint", options=options
            )
        )
        self.job_id = job_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RegionSelect:
        job_id = uuid.UUID(match["job"])
        return cls(job_id, int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self._choose(interaction)
        except Exception:
            log.exception("region choice on job %s failed", self.job_id)
            await report_error(interaction)

    async def _choose(self, interaction: discord.Interaction) -> None:
        region = self.item.values[0] if self.item.values else ""
        if region == kinds.DRAWN:
            editor = bot_of(interaction).editor
            if editor is None:
                await refuse(interaction, "Drawing a region needs the web gallery, and this bot has none set up.")
            else:
                await send_editor_link(interaction, editor, self.job_id, self.index)
            return
        if region not in REGIONS:
            await refuse(interaction, "Choose one of the listed regions.")
            return
        chosen = kinds.recipe(JobKind.REGION, region)
        prompt = await remix_prompt(interaction, self.job_id)
        if prompt is not None:
            await interaction.response.send_modal(
                RemixModal(job_id=self.job_id, index=self.index, recipe=chosen, prompt=prompt)
            )
            return
        await defer_public(interaction)
        state = await load_click_state(interaction, self.job_id)
        if state.job is None or state.owner_id is None:
            await refuse(interaction, "That job no longer exists.")
            return
        await queue_action(
            interaction, parent=state.job, owner_id=state.owner_id, recipe=chosen, index=self.index
        )


def region_view(job_id: uuid.UUID, index: int, *, drawable: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RegionSelect(job_id, index, drawable=drawable))
    return view


# --------------------------------------------------------------------------- remix


class RemixModal(discord.ui.Modal, title="Remix"):
    """Remix mode: edit the prompt before a variation (or reroll, or region) runs. Custom Zoom
    uses it too: the prompt then ends in ``--zoom N``, which picks the zoom recipe. So does
    Use as Control, with a second field for the ``--cn`` controls the image is followed by."""

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        index: int,
        recipe: Recipe | None,
        prompt: str,
        custom_zoom: bool = False,
        controls: str | None = None,
        instruction: bool = False,
    ) -> None:
        form = "zoom" if custom_zoom else "control" if controls is not None else "edit" if instruction else "remix"
        super().__init__(timeout=15 * 60, custom_id=f"{form}:v1:{job_id}:{index}")
        if custom_zoom:
            self.title = "Custom Zoom"
        self.controls: discord.ui.TextInput[RemixModal] | None = None
        if instruction:
            self.title = "Edit"
        if controls is not None:
            self.title = "Use as Control"
        self.job_id = job_id
        self.index = index
        self.recipe = recipe
        """None: a reroll (or, with ``custom_zoom``, the zoom the prompt's ``--zoom`` names)."""
        self.custom_zoom = custom_zoom
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label="Instruction (what to change, e.g. make it night)" if instruction else "Prompt",
            custom_id="prompt",
            style=discord.TextStyle.paragraph,
            default=prompt[:4000] or None,
            max_length=4000,
            required=True,
        )
        self.add_item(self.prompt)
        if controls is not None:
            self.controls = discord.ui.TextInput(
                label="Controls (canny, lineart, scribble, tile, depth; :weight)",
                custom_id="controls",
                default=controls,
                max_length=100,
                required=True,
            )
            self.add_item(self.controls)

    # discord.py's Modal.on_error takes no item, unlike View.on_error it overrides.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        log.error("remix of job %s failed", self.job_id, exc_info=error)
        await report_error(interaction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        text, recipe = self.prompt.value, self.recipe
        if self.custom_zoom:
            try:
                text, recipe = split_custom_zoom(text)
            except ValueError as exc:
                await refuse(interaction, f"{exc}. Nothing was charged.")
                return
        chosen: tuple[ControlRef, ...] | None = None
        if self.controls is not None:
            try:
                chosen = read_controls(self.controls.value)
            except PromptError as exc:
                await refuse(interaction, f"I could not read the controls: {exc}. Nothing was charged.")
                return
        if await refused_before_deferring(interaction, text):
            return
        await defer_public(interaction)
        state = await load_click_state(interaction, self.job_id)
        if state.job is None or state.owner_id is None:
            await refuse(interaction, "That job no longer exists.")
            return
        await queue_action(
            interaction,
            parent=state.job,
            owner_id=state.owner_id,
            recipe=recipe,
            index=self.index,
            remix_text=text,
            controls=chosen,
        )
