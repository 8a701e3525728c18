"""Gallery pages as Discord messages, and their buttons.

A page shows one image with its full recipe. Its buttons are ``DynamicItem`` s whose custom
ids carry ids only (see :mod:`bot.services.gallery`), so paging and liking work on any
gallery message, whenever it was sent and however often the bot restarted since:

* ``gal:v1:p:<mode>:<arg>:<page>[:a|b<image id>]``: ◀ / ▶, show that page: the images
  after (``a``) or before (``b``) the one shown (keyset: as fast on page 5,000 as on
  page 1); the page number is for display, and finds the page when the image is gone
  (messages from before anchors carry the number only);
* ``gal:v1:lk|ul:<mode>:<arg>:<page>:<image id>``: ❤ like or unlike (gallery messages are
  ephemeral, so each viewer's buttons carry their own state, and a stale click repeats
  what it said rather than flipping it);
* ``gal:v1:use:<image id>``: "Use this prompt", a form prefilled with the recipe that
  queues it like ``/imagine`` does.
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import discord

from bot.delivery import fit_image
from bot.replies import bot_of, refuse
from bot.services import gallery as gallery_service
from bot.services.errors import Refused
from bot.services.gallery import GalleryEntry, GalleryFilter, GalleryPage
from bot.views.submitting import submit_and_acknowledge
from db.repositories.gallery import Anchor

log = logging.getLogger(__name__)

_MODE = r"(?P<mode>[rtsum])"
NAV_TEMPLATE = rf"gal:v1:p:{_MODE}:(?P<arg>[0-9]+):(?P<page>[0-9]+)(?::(?P<dir>[ab])(?P<anchor>[0-9]+))?"
LIKE_TEMPLATE = rf"gal:v1:(?P<op>lk|ul):{_MODE}:(?P<arg>[0-9]+):(?P<page>[0-9]+):(?P<image>[0-9]+)"
USE_TEMPLATE = r"gal:v1:use:(?P<image>[0-9]+)"
COLOUR = discord.Colour.from_rgb(235, 69, 158)
PROMPT_INPUT_LIMIT = 4000
"""The longest text a Discord form field holds."""
_NO_MENTIONS = discord.AllowedMentions.none()


def nav_id(filter: GalleryFilter, page: int, anchor: Anchor | None = None) -> str:
    at = "" if anchor is None else f":{'b' if anchor.backwards else 'a'}{anchor.image_id}"
    return f"gal:v1:p:{filter.mode.code}:{filter.arg}:{max(page, 0)}{at}"


def like_id(filter: GalleryFilter, page: int, image_id: int, *, like: bool) -> str:
    return f"gal:v1:{'lk' if like else 'ul'}:{filter.mode.code}:{filter.arg}:{page}:{image_id}"


def use_id(image_id: int) -> str:
    return f"gal:v1:use:{image_id}"


# --------------------------------------------------------------------------- rendering


def page_content(page: GalleryPage) -> str:
    """The line above the image: which gallery, which page."""
    if not page.entries:
        return f"**Gallery** · {page.filter.describe()}\nNothing to show yet."
    line = f"**Gallery** · {page.filter.describe()} · {page.page + 1} of {page.pages:,}{'+' if page.more else ''}"
    if page.corrected is not None:
        line += f"\nNo prompt has those exact words; showing “{discord.utils.escape_markdown(page.corrected)}”."
    return line


def entry_embed(entry: GalleryEntry, filename: str | None) -> discord.Embed:
    """One image with its full recipe, maker, model and likes."""
    recipe = discord.utils.escape_markdown(entry.recipe)
    embed = discord.Embed(colour=COLOUR, description=recipe if len(recipe) <= 4000 else recipe[:3999] + "…")
    embed.add_field(name="By", value=f"<@{entry.owner_discord_id}>")
    embed.add_field(name="Model", value=entry.model)
    embed.add_field(name="Likes", value=f"❤ {entry.likes}")
    if filename is not None:
        embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(text=f"job {entry.job_id} · image #{entry.index + 1} · {entry.width}×{entry.height}")
    embed.timestamp = entry.created_at
    return embed


def page_view(page: GalleryPage) -> discord.ui.View | None:
    """◀ ▶ ❤ and "Use this prompt" for the page's image (None for an empty page)."""
    if not page.entries:
        return None
    entry = page.entries[0]
    view = discord.ui.View(timeout=None)
    back = Anchor(entry.image_id, backwards=True) if page.page > 1 else None  # page 1: by number
    view.add_item(
        GalleryPageButton(page.filter, page.page - 1, back, label="◀", disabled=not page.has_previous)
    )
    onwards = Anchor(page.entries[-1].image_id)
    view.add_item(GalleryPageButton(page.filter, page.page + 1, onwards, label="▶", disabled=not page.has_next))
    view.add_item(
        GalleryLikeButton(page.filter, page.page, entry.image_id, like=not entry.liked, likes=entry.likes)
    )
    view.add_item(GalleryUseButton(entry.image_id))
    return view


async def show_page(interaction: discord.Interaction, page: GalleryPage) -> None:
    """Put ``page`` in the interaction's message (which must be deferred)."""
    files: list[discord.File] = []
    embed: discord.Embed | None = None
    if page.entries:
        entry = page.entries[0]
        file = await _image_file(interaction, entry)
        embed = entry_embed(entry, file.filename if file is not None else None)
        files = [file] if file is not None else []
    await interaction.edit_original_response(
        content=page_content(page),
        embed=embed,
        attachments=files,
        view=page_view(page),
        allowed_mentions=_NO_MENTIONS,
    )


async def _image_file(interaction: discord.Interaction, entry: GalleryEntry) -> discord.File | None:
    bot = bot_of(interaction)
    try:
        data = await bot.images.read(entry.storage_key)
        fitted, filename = fit_image(data, interaction.filesize_limit, f"gallery_{entry.image_id}")
    except Exception:
        # The recipe is still worth showing when the file is gone from the store.
        log.warning(
            "gallery image %s (%s) could not be read", entry.image_id, entry.storage_key, exc_info=True
        )
        return None
    return discord.File(io.BytesIO(fitted), filename=filename)


# --------------------------------------------------------------------------- buttons


class GalleryPageButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=NAV_TEMPLATE):
    """◀ / ▶: show another page of the same gallery."""

    def __init__(
        self,
        filter: GalleryFilter,
        page: int,
        anchor: Anchor | None = None,
        *,
        label: str = "▶",
        disabled: bool = False,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=nav_id(filter, page, anchor),
                disabled=disabled,
            )
        )
        self.code = filter.mode.code
        self.arg = filter.arg
        self.page = max(page, 0)
        self.anchor = anchor

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GalleryPageButton:
        # Ids only here; the stored query is loaded in the callback, after the defer.
        mode = gallery_service.GalleryMode.from_code(match["mode"])
        anchor = None
        if match["anchor"] is not None:
            anchor = Anchor(int(match["anchor"]), backwards=match["dir"] == "b")
        return cls(GalleryFilter(mode, int(match["arg"])), int(match["page"]), anchor)

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        bot = bot_of(interaction)
        try:
            async with bot.sessions() as session:
                filter = await gallery_service.load_filter(session=session, code=self.code, arg=self.arg)
                page = await gallery_service.gallery_page(
                    session=session,
                    guild_discord_id=interaction.guild_id or 0,
                    filter=filter,
                    page=self.page,
                    viewer_discord_id=interaction.user.id,
                    anchor=self.anchor,
                )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await show_page(interaction, page)


class GalleryLikeButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=LIKE_TEMPLATE):
    """❤: like the image (or unlike it, when the viewer already does)."""

    def __init__(
        self, filter: GalleryFilter, page: int, image_id: int, *, like: bool, likes: int = 0
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"❤ {likes}" if like else f"Unlike ({likes})",
                style=discord.ButtonStyle.primary if like else discord.ButtonStyle.secondary,
                custom_id=like_id(filter, page, image_id, like=like),
            )
        )
        self.code = filter.mode.code
        self.arg = filter.arg
        self.page = page
        self.image_id = image_id
        self.like = like

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GalleryLikeButton:
        mode = gallery_service.GalleryMode.from_code(match["mode"])
        return cls(
            GalleryFilter(mode, int(match["arg"])),
            int(match["page"]),
            int(match["image"]),
            like=match["op"] == "lk",
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        bot = bot_of(interaction)
        guild_id = interaction.guild_id or 0
        try:
            async with bot.sessions() as session:
                async with session.begin():
                    await gallery_service.set_like(
                        session=session,
                        guild_discord_id=guild_id,
                        viewer_discord_id=interaction.user.id,
                        image_id=self.image_id,
                        liked=self.like,
                    )
                filter = await gallery_service.load_filter(session=session, code=self.code, arg=self.arg)
                page = await gallery_service.gallery_page_showing(
                    session=session,
                    guild_discord_id=guild_id,
                    filter=filter,
                    page=self.page,
                    image_id=self.image_id,
                    viewer_discord_id=interaction.user.id,
                )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await show_page(interaction, page)


class GalleryUseButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=USE_TEMPLATE):
    """ "Use this prompt": a form prefilled with the image's recipe, queued like ``/imagine``."""

    def __init__(self, image_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Use this prompt",
                emoji="✏️",
                style=discord.ButtonStyle.success,
                custom_id=use_id(image_id),
            )
        )
        self.image_id = image_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GalleryUseButton:
        return cls(int(match["image"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        # A form must be the first answer (it cannot follow a defer): one quick read.
        bot = bot_of(interaction)
        try:
            async with bot.sessions() as session:
                prompt = await gallery_service.reusable_prompt(
                    session=session, guild_discord_id=interaction.guild_id or 0, image_id=self.image_id
                )
        except Refused as refusal:
            await refuse(interaction, refusal)
            return
        await interaction.response.send_modal(UsePromptModal(self.image_id, prompt))


class UsePromptModal(discord.ui.Modal, title="Imagine"):
    """The prompt of a gallery image, to edit and queue as a new ``/imagine``."""

    def __init__(self, image_id: int, prompt: str) -> None:
        super().__init__(timeout=15 * 60, custom_id=f"gal:v1:usem:{image_id}")
        self.prompt: discord.ui.TextInput[UsePromptModal] = discord.ui.TextInput(
            label="Prompt",
            style=discord.TextStyle.paragraph,
            default=prompt[:PROMPT_INPUT_LIMIT],
            max_length=PROMPT_INPUT_LIMIT,
            required=True,
            custom_id="prompt",
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        # The same path as /imagine.
        await submit_and_acknowledge(interaction, self.prompt.value)


GALLERY_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    GalleryPageButton,
    GalleryLikeButton,
    GalleryUseButton,
)
"""Register with ``bot.add_dynamic_items(*GALLERY_ITEMS)`` so old gallery messages keep working."""
