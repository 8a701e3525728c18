"""The message a finished or failed job is posted as: its text, its file and its buttons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import discord

from bot import render
from bot.views.buttons import build_view
from bot.views.described import described_text, described_view
from core.kinds import Recipe, UnknownRecipe, recipe
from core.spec import JobKind, JobSpec
from db.models import Guild, Image, Job, JobStatus

FileMaker = Callable[..., Awaitable[tuple[discord.File | None, str | None]]]
"""Makes one image's upload: ``(key, *, stem, flagged, policy, in_dm, channel_id, size_limit)``
(:meth:`bot.delivery.Delivery.image_file`)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A result message ready to send."""

    content: str
    files: list[discord.File]
    view: discord.ui.View | None
    owner: int | None = None
    """The Discord id the message pings (its job's owner); no one else is pinged, whatever the
    prompt's words mention."""

    def mentions(self, *, replied_user: bool = False) -> discord.AllowedMentions:
        """Pings for this message: its owner alone (and the replied-to author if asked)."""
        users = [discord.Object(self.owner)] if self.owner is not None else False
        return discord.AllowedMentions(everyone=False, roles=False, users=users, replied_user=replied_user)


async def prepare(
job: Job, *, owner: int, guild: Guild | None, size_limit: int, files_of: FileMaker
) -> Prepared:
    """The result message of an ended job: text, file and buttons."""
    spec = JobSpec.from_dict(job.params)
    if job.status == JobStatus.CANCELLED:
        return Prepared(
            render.stopped_text(job.prompt, user_id=owner, refunded=job.refunded or 0, cost=job.cost, job_id=job.id),
            [],
            None,
            owner=owner,
        )
    if job.status == JobStatus.FAILED:
        refunded = job.cost
        return Prepared(
            render.failed_text(
                job.prompt, user_id=owner, error=job.error, refunded=refunded, job_id=job.id
            ),
            [],
            None,
            owner=owner,
        )
    if job.prompts is not None:
        return Prepared(
            described_text(job.prompts, user_id=owner, model=job.model, job_id=job.id),
            [],
            described_view(job.id, len(job.prompts)),
            owner=owner,
        )
    images: Sequence[Image] = job.images
    found = _recipe_of(job)
    grid = (found is None or found.grid) and len(images) > 1 and job.grid_storage_key is not None
    key = job.grid_storage_key if grid else images[0].storage_key if images else None
    files: list[discord.File] = []
    note: str | None = None
    if key is not None:
        file, note = await files_of(
            key,
            stem=f"{'grid' if grid else 'image'}_{str(job.id)[:8]}",
            flagged=any(img.nsfw for img in images),
            policy=guild.nsfw_policy if guild is not None else None,
            in_dm=job.guild_id is None,
            channel_id=job.channel_id,
            size_limit=size_limit,
        )
        if file is not None:
            files.append(file)
    buttons = (
        render.grid_buttons(rerolls=found is None or found.rerolls)
        if grid
        else render.single_image_buttons(
            images[0].index if images else 0, public=bool(images and images[0].public)
        )
    )
    content = render.result_text(
        spec,
        user_id=owner,
        kind=job.kind,
        variant=job.variant,
        parent_index=job.parent_index,
        model=job.model,
        job_id=job.id,
        note=note,
    )
    if job.kind is JobKind.TRAIN:
        said = dict(spec.extra)
        content += (f"\nYour LoRA `{said.get('lora', '?')}` is ready: add `--lora {said.get('lora', '?')}` and its "
                    f"trigger `{said.get('trigger', '?')}` to a prompt. `/lora list` shows yours.")
    return Prepared(content, files, build_view([(job.id, b) for b in buttons]), owner=owner)


def _recipe_of(job: Job) -> Recipe | None:
    """The job's recipe; None for a kind this version does not know (shown as a grid with 🔄)."""
    try:
        return recipe(job.kind, job.variant)
    except UnknownRecipe:
        return None
