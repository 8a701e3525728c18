"""``/imagine``, ``/blend`` and ``/describe``: queue new images from a prompt or from images,
or prompts read from an image."""

from __future__ import annotations

from typing import cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.autocomplete import lora_autocomplete, model_autocomplete, sampler_autocomplete
from bot.context import BotContext
from bot.replies import refuse
from bot.services.requests import ImageInput
from bot.views.submitting import submit_and_acknowledge
from core.spec import JobKind

BLEND_SHAPES = {"square": "1:1", "portrait": "2:3", "landscape": "3:2"}


def image_input(attachment: discord.Attachment) -> ImageInput:
    return ImageInput(
        url=attachment.url,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
    )


def with_option_flags(
    prompt: str, *, model: str | None = None, lora: str | None = None, sampler: str | None = None
) -> str:
    """The prompt with the command's options appended as the flags they stand for.

    Autocomplete only suggests, so the values go through the same parsing and checks as
    typed flags (an unknown model, LoRA or sampler is refused with the same message).
    """
    flags = []
    for flag, value in (("--model", model), ("--lora", lora), ("--sampler", sampler)):
        if value is not None and value.strip():
            cleaned = value.strip().replace('"', "")
            flags.append(f'{flag} "{cleaned}"' if " " in cleaned else f"{flag} {cleaned}")
    return " ".join([prompt, *flags])


class ImagineCog(commands.Cog):
    """Making new images."""

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot

    @app_commands.command(name="imagine")
    @app_commands.describe(
        prompt="What to draw, then --flags (e.g. a fox in the snow --ar 16:9)",
        image="An image prompt: the result borrows from it",
        image2="A second image prompt",
        image3="A third image prompt",
        model="The model to draw with (same as --model)",
        lora="A LoRA style of that model (same as --lora)",
        sampler="The sampler (same as --sampler)",
    )
    @app_commands.autocomplete(model=model_autocomplete, lora=lora_autocomplete, sampler=sampler_autocomplete)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        image: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
        lora: app_commands.Range[str, 1, 100] | None = None,
        sampler: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Create four images from a prompt."""
        images = [image_input(a) for a in (image, image2, image3) if a is not None]
        text = with_option_flags(prompt, model=model, lora=lora, sampler=sampler)
        await self._submit(interaction, text, images, JobKind.IMAGINE, "Imagine")

    @app_commands.command(name="blend")
    @app_commands.describe(
        image1="First image",
        image2="Second image",
        image3="Third image",
        image4="Fourth image",
        image5="Fifth image",
        shape="Shape of the result",
    )
    @app_commands.choices(shape=[app_commands.Choice(name=k.title(), value=k) for k in BLEND_SHAPES])
    async def blend(
        self,
        interaction: discord.Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        shape: str = "square",
    ) -> None:
        """Blend 2 to 5 images into four new ones."""
        images = [image_input(a) for a in (image1, image2, image3, image4, image5) if a is not None]
        await self._submit(
            interaction, f"--ar {BLEND_SHAPES.get(shape, '1:1')}", images, JobKind.BLEND, "Blend"
        )

    @app_commands.command(name="describe")
    @app_commands.describe(
        image="The picture to describe",
        link="Or a link to the picture",
        model="Whose captioner reads it, and whose words the prompts use (same as --model)",
    )
    @app_commands.autocomplete(model=model_autocomplete)
    async def describe(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        link: app_commands.Range[str, 1, 2048] | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Read four prompts out of a picture, each ready to imagine."""
        if (image is None) == (link is None):
            await refuse(interaction, "Give `/describe` one picture: attach an `image` or paste a `link`, not both. Nothing was charged.")
            return
        if link is not None and (len(link.split()) != 1 or not link.strip().lower().startswith(("https://", "http://"))):
            await refuse(interaction, "`link` must be one link to a picture (`https://...`). Nothing was charged.")
            return
        images = [image_input(image)] if image is not None else []
        text = with_option_flags(link.strip() if link is not None else "", model=model)
        await self._submit(interaction, text, images, JobKind.DESCRIBE, "Describe")

    @app_commands.command(name="edit")
    @app_commands.describe(
        image="The picture to change",
        prompt="With a mask: what the repainted part shows; without: the instruction (make it night)",
        mask="Where to change it: white = repaint, black = keep; leave out to edit by instruction",
        model="The model to paint with (same as --model)",
    )
    @app_commands.autocomplete(model=model_autocomplete)
    async def edit(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 6000],
        mask: discord.Attachment | None = None,
        model: app_commands.Range[str, 1, 100] | None = None,
    ) -> None:
        """Change a picture: by instruction (an editing model), or repaint where your mask is white."""
        text = with_option_flags(prompt, model=model)
        if mask is None:
            await submit_and_acknowledge(
                interaction, text, images=[image_input(image)], kind=JobKind.EDIT, title="Edit", variant="instruction"
            )
            return
        await self._submit(interaction, text, [image_input(image), image_input(mask)], JobKind.EDIT, "Edit")

    async def _submit(
        self, interaction: discord.Interaction, text: str, images: list[ImageInput], kind: JobKind, title: str
    ) -> None:
        await submit_and_acknowledge(interaction, text, images=images, kind=kind, title=title)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ImagineCog(cast("BotContext", bot)))
