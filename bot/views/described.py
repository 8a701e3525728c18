"""A ``/describe`` result: its four prompts, and the buttons that imagine one or all of them.

The message lists the prompts the model's captioner read (numbered 1-4); under it, buttons
1-4 imagine that prompt and **Imagine all** queues the four at once, on the clicker's own
credits and with the model that described the picture (the prompts are in its words).
Like every result button, a :class:`DescribedPrompt` carries ids only
(``img:v1:dp:<job>:<n>``, ``img:v1:da:<job>:0``) and reads the prompts from the database
when it is clicked, so the buttons keep working after a restart.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

import discord

from bot.render import credits
from bot.replies import acknowledge, bot_of, defer_public, refuse, report_error, requester_from
from bot.services.errors import Refused
from bot.services.submit import submit_prompt
from bot.views.actions import JOB_ID, custom_id
from bot.views.buttons import queued_view
from core.spec import JobKind
from db.repositories import get_job

log = logging.getLogger(__name__)

PROMPT_ACTION = "dp"
"""Imagine prompt ``index`` of a description."""
ALL_ACTION = "da"
"""Imagine every prompt of a description."""
NUMBERS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣")


def described_text(prompts: Sequence[str], *, user_id: int, model: str, job_id: uuid.UUID) -> str:
    """The message of a done describe job: its prompts, numbered, and whose they are."""
    lines = [f"**Describe** — <@{user_id}>"]
    lines += [
        f"{NUMBERS[n]} {discord.utils.escape_markdown(discord.utils.escape_mentions(p))}"
        for n, p in enumerate(prompts[: len(NUMBERS)])
    ]
    lines.append(f"-# {model} · job `{job_id}` · click a number to imagine that prompt")
    return "\n".join(lines)[:2000]


class DescribedPrompt(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"img:v1:(?P<action>{PROMPT_ACTION}|{ALL_ACTION}):(?P<job>{JOB_ID}):(?P<index>[0-9])",
):
    """A number button (or Imagine all) under a description."""

    def __init__(self, job_id: uuid.UUID, action: str, index: int) -> None:
        every = action == ALL_ACTION
        super().__init__(
            discord.ui.Button(
                label="Imagine all" if every else str(index + 1),
                emoji="🎨" if every else None,
                style=discord.ButtonStyle.primary if every else discord.ButtonStyle.secondary,
                row=0,
                custom_id=custom_id(action, job_id, index),
            )
        )
        self.job_id = job_id
        self.action = action
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DescribedPrompt:
        return cls(uuid.UUID(match["job"]), match["action"], int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await imagine_described(
                interaction, self.job_id, None if self.action == ALL_ACTION else self.index
            )
        except Exception:
            log.exception("describe button %s on job %s failed", self.action, self.job_id)
            await report_error(interaction)


def described_view(job_id: uuid.UUID, count: int) -> discord.ui.View:
    """Buttons 1..count and Imagine all (when there is more than one prompt)."""
    view = discord.ui.View(timeout=None)
    for index in range(min(count, len(NUMBERS))):
        view.add_item(DescribedPrompt(job_id, PROMPT_ACTION, index))
    if count > 1:
        view.add_item(DescribedPrompt(job_id, ALL_ACTION, 0))
    return view


async def imagine_described(interaction: discord.Interaction, job_id: uuid.UUID, index: int | None) -> None:
    """Queue prompt ``index`` of a description (None: all of them) as imagine jobs."""
    await defer_public(interaction)
    bot = bot_of(interaction)
    async with bot.sessions() as session:
        job = await get_job(session=session, job_id=job_id)
    prompts = list(job.prompts or []) if job is not None and job.kind == JobKind.DESCRIBE else []
    if not prompts or (index is not None and index >= len(prompts)):
        await refuse(interaction, "That description is no longer available. Nothing was charged.")
        return
    assert job is not None
    chosen = prompts if index is None else [prompts[index]]
    texts = [f"{prompt} --model {job.model}" for prompt in chosen]
    try:
        submission = await submit_prompt(
            sessions=bot.sessions,
            publisher=bot.publisher,
            catalog=bot.catalog,
            requester=requester_from(interaction),
            text=texts,
            banned_words=bot.banned_words,
            workers=bot.workers,
        )
    except Refused as refusal:
        await refuse(interaction, refusal)
        return
    title = "Imagine" if index is None else f"Imagine (prompt {index + 1} of the description)"
    await acknowledge(interaction, submission, title=title, view=queued_view(submission.jobs[0].job_id))
    if index is None and submission.created and len(submission.jobs) > 1:
        cost = sum(job.cost for job in submission.jobs)
        await interaction.followup.send(
            f"Queued {len(submission.jobs)} jobs, one per prompt ({credits(cost)}).", ephemeral=True
        )


DESCRIBED_ITEMS = (DescribedPrompt,)
"""Register with ``bot.add_dynamic_items(*DESCRIBED_ITEMS)`` so old descriptions keep working."""
