"""Repository functions: plain, keyword-only, async, each taking ``session: AsyncSession``.

They never commit: the caller owns the transaction (``async with session.begin(): ...``)
and decides when the work becomes visible. Functions that write several rows (create,
finish, fail, cancel a job) are atomic within it.

Ids are our own primary keys (``users.id``, ``guilds.id``, ``jobs.id``), not Discord ids:
:func:`upsert_user` and :func:`upsert_guild` turn a Discord id into a row.

Credit movements are raw SQL that bypasses the ORM: a ``User`` loaded before a hold,
capture or release shows the old balance until re-read (``await session.refresh(user)``).
"""

from db.errors import InsufficientCredits, JobStateError
from db.repositories.accounts import (
    GUILD_POLICY_FIELDS,
    balance_of,
    ban_reasons,
    discord_id_of,
    guild_by_discord_id,
    guild_by_id,
    lock_guild,
    lock_user,
    set_user_banned,
    settings_of,
    update_guild_policy,
    update_user_settings,
    upsert_guild,
    upsert_user,
    user_by_discord_id,
)
from db.repositories.credits import capture_credits, grant_credits, hold_credits, release_credits
from db.repositories.gallery import count_likes, favorite_image, like_image, unfavorite_image, unlike_image
from db.repositories.jobs import (
    NewImage,
    NewJob,
    add_images,
    cancel_job,
    claim_job,
    create_job,
    fail_job,
    finish_job,
    get_job,
    get_job_by_interaction,
    job_params,
    notify_job_event,
    requeue_job,
    set_result_message,
)
from db.repositories.moderation import record_moderation_event
from db.repositories.queue import (
    ActiveJobs,
    active_jobs,
    count_active_jobs,
    ended_without_message,
    mark_jobs_published,
    mark_outbox_published,
    queue_position,
    render_targets,
    undelivered_jobs,
    unpublished_outbox,
)
from db.repositories.recovery import (
    OUTBOX_GRACE,
    OverdueJob,
    drain_outbox,
    overdue_queued_jobs,
    queued_jobs_to_republish,
    stale_running_jobs,
)

__all__ = [
    "GUILD_POLICY_FIELDS",
    "OUTBOX_GRACE",
    "ActiveJobs",
    "InsufficientCredits",
    "JobStateError",
    "NewImage",
    "NewJob",
    "OverdueJob",
    "active_jobs",
    "add_images",
    "balance_of",
    "ban_reasons",
    "cancel_job",
    "capture_credits",
    "claim_job",
    "count_active_jobs",
    "count_likes",
    "create_job",
    "discord_id_of",
    "drain_outbox",
    "ended_without_message",
    "fail_job",
    "favorite_image",
    "finish_job",
    "get_job",
    "get_job_by_interaction",
    "grant_credits",
    "guild_by_discord_id",
    "guild_by_id",
    "hold_credits",
    "job_params",
    "like_image",
    "lock_guild",
    "lock_user",
    "mark_jobs_published",
    "mark_outbox_published",
    "notify_job_event",
    "overdue_queued_jobs",
    "queue_position",
    "queued_jobs_to_republish",
    "record_moderation_event",
    "release_credits",
    "render_targets",
    "requeue_job",
    "set_result_message",
    "set_user_banned",
    "settings_of",
    "stale_running_jobs",
    "undelivered_jobs",
    "unfavorite_image",
    "unlike_image",
    "unpublished_outbox",
    "update_guild_policy",
    "update_user_settings",
    "upsert_guild",
    "upsert_user",
    "user_by_discord_id",
]
