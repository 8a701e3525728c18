"""What a click on a job's button needs from the database: the job, its owner, the clicker's
settings, and the prompt a remix form shows."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import discord

from bot.replies import bot_of
from bot.services.user_settings import UserSettings
from core import prompt as grammar
from core.spec import JobSpec
from db.models import Job
from db.repositories import discord_id_of, get_job, job_params, settings_of


@dataclass(frozen=True, slots=True)
class ClickState:
    """What a click needs to know, loaded from the database."""

    job: Job | None
    owner_id: int | None
    """The Discord id of the job's owner."""
    settings: UserSettings
    """The clicking user's settings."""


async def load_click_state(interaction: discord.Interaction, job_id: uuid.UUID) -> ClickState:
    """The job, its owner and the clicker's settings; called once the click is answered or deferred."""
    bot = bot_of(interaction)
    async with bot.sessions() as session:
        job = await get_job(session=session, job_id=job_id, with_images=True)
        owner = await discord_id_of(session=session, user_id=job.user_id) if job else None
        stored = await settings_of(session=session, discord_id=interaction.user.id)
    return ClickState(job=job, owner_id=owner, settings=UserSettings.from_json(stored))


async def remix_prompt(interaction: discord.Interaction, job_id: uuid.UUID) -> str | None:
    """The prompt to show in the remix form when the clicker has remix mode on, else None.

    The one read before a click is answered: Discord takes a form only as the first
    response, and the form shows the job's prompt. A job that is gone shows no form (the
    click then fails after its deferral, like any other).
    """
    bot = bot_of(interaction)
    async with bot.sessions() as session:
        stored = await settings_of(session=session, discord_id=interaction.user.id)
        if not UserSettings.from_json(stored).remix:
            return None
        params = await job_params(session=session, job_id=job_id)
    return None if params is None else editable_prompt(JobSpec.from_dict(params))


async def job_prompt(interaction: discord.Interaction, job_id: uuid.UUID) -> str | None:
    """The job's prompt as a form shows it (Custom Zoom's), whatever the clicker's settings;
    None when the job is gone."""
    async with bot_of(interaction).sessions() as session:
        params = await job_params(session=session, job_id=job_id)
    return None if params is None else editable_prompt(JobSpec.from_dict(params))


def editable_prompt(spec: JobSpec) -> str:
    """The prompt as the remix form shows it: the canonical text, without the old seed."""
    return grammar.format(dataclasses.replace(spec, seed=None, model=None, repeat=1))
