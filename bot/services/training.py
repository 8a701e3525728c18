"""``/train``: check a member's training request, show its cost, then queue it.

:func:`prepare_training` checks everything before anything is charged: the name and trigger
(unique in the server), the kind, the model (its family must train LoRAs), 5-40 pictures
that decode (attachments or a zip with optional captions), the moderation of every word
given (the built-in filter and the server's banned words; a face LoRA whose words refer to
a minor is refused), the daily caps and the balance. The member then sees the cost and
starts it (:func:`start_training`), which holds the credits, stores the request with its
pictures and the training job in one transaction, and publishes the job. The worker scores
every picture before it trains (an explicit one is refused where the server does not post
NSFW images, and always for a face), so nothing reaches a GPU unscreened; a refusal there
refunds everything.

Caps: :data:`USER_TRAININGS_PER_DAY` per member and :data:`SERVER_TRAININGS_PER_DAY` per
server (failed ones count: the GPU time was spent), one training at a time per member.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import checks
from bot.services.errors import RefusalReason, Refused
from bot.services.publish import RenderPublisher
from bot.services.quotas import admit
from bot.services.requests import Requester, Submission
from bot.services.server_models import validate_model
from bot.services.submit import already_handled, queued_job, requester_rows
from bot.services.workers import WorkerDirectory, check_served
from core.families import family
from core.minors import mentions_minor
from core.models import ModelCatalog
from core.sizes import size_for_aspect
from core.spec import JobKind, JobSpec, Lane, PromptPart
from core.training import (
    Picture,
    TrainingKind,
    TrainingRefused,
    TrainingRequest,
    check_name,
    check_pictures,
    check_steps,
    check_trigger,
    normalised,
    sample_prompts,
    training_cost,
    training_steps,
)
from db.errors import InsufficientCredits
from db.models import NsfwPolicy
from db.repositories import balance_of, create_job, queue_position
from db.repositories import trained_loras as loras

USER_TRAININGS_PER_DAY = 3
SERVER_TRAININGS_PER_DAY = 20


@dataclass(frozen=True, slots=True)
class PreparedTraining:
    """A checked request, waiting for the member to start it."""

    name: str
    trigger: str
    kind: TrainingKind
    model: str
    pictures: tuple[tuple[bytes, int, int, str], ...]
    """``(normalised data, width, height, caption)`` per picture."""
    cost: int
    steps: int
    balance: int


async def prepare_training(
    *, sessions: async_sessionmaker[AsyncSession], catalog: ModelCatalog, requester: Requester, name: str,
    trigger: str, kind: str, model: str | None, pictures: list[Picture], workers: WorkerDirectory | None = None,
    steps: int | None = None,
) -> PreparedTraining:
    """Check a request (see the module docstring); nothing is charged or stored.

    Raises:
        Refused: with the reason.
    """
    try:
        check_name(name)
        check_trigger(trigger)
        check_steps(steps)
        chosen_kind = TrainingKind(kind)
        pictures = check_pictures(pictures)
    except TrainingRefused as exc:
        raise Refused(f"{exc} Nothing was charged.", reason=RefusalReason.INPUT) from None
    except ValueError:
        raise Refused("The kind is subject, face or style.", reason=RefusalReason.INPUT) from None
    user, guild = await requester_rows(sessions, requester)
    entry = validate_model(model, guild, catalog=catalog)
    if not family(entry.family).trains_loras:
        raise Refused(f"LoRAs cannot be trained on `{entry.name}` ({family(entry.family).title}); pick an "
                      "SD 1.5 or SDXL model. Nothing was charged.", reason=RefusalReason.MODEL)
    words = " ".join([name, trigger, *(p.caption for p in pictures)])
    if chosen_kind is TrainingKind.FACE and mentions_minor(words):
        raise Refused("A face LoRA of a child is never trained. Nothing was charged.",
                      reason=RefusalReason.MODERATION, detail={"rule": "minor_face", "text": words[:300]})
    await checks.moderate(sessions, user, guild, [JobSpec(parts=(PromptPart(words),))], typed=words)
    await check_served(workers, entry.name, Lane.FAST)
    guild_id = guild.id if guild is not None else None
    async with sessions() as session:
        taken = await loras.taken(session=session, guild_id=guild_id, name=name, trigger=trigger)
        if taken:
            raise Refused(f"The {taken} `{name if taken == 'name' else trigger}` is already taken in this server; "
                          "pick another. Nothing was charged.", reason=RefusalReason.INPUT)
        await _check_caps(session, user.id, guild_id)
        balance = await balance_of(session=session, user_id=user.id)
    steps = steps or training_steps(len(pictures))
    cost = training_cost(len(pictures), steps)
    if cost > balance:
        raise Refused(f"Training on {len(pictures)} pictures costs {cost} credits; you have {balance}.",
                      reason=RefusalReason.CREDITS)
    kept = tuple((*normalised(p), p.caption) for p in pictures)
    return PreparedTraining(name, trigger, chosen_kind, entry.name, kept, cost, steps, balance)


async def start_training(
    *, sessions: async_sessionmaker[AsyncSession], publisher: RenderPublisher, catalog: ModelCatalog,
    requester: Requester, prepared: PreparedTraining,
) -> Submission:
    """Hold the credits, store the request and queue the training job (one transaction); the
    interaction that starts it is its idempotency key.

    Raises:
        Refused: the caps, the balance or the name changed since it was prepared.
    """
    existing = await already_handled(sessions, requester)
    if existing is not None:
        return existing
    user, guild = await requester_rows(sessions, requester)
    guild_id = guild.id if guild is not None else None
    entry = catalog.get(prepared.model)
    nsfw_allowed = guild is None or guild.nsfw_policy is not NsfwPolicy.WITHHOLD
    request = TrainingRequest(prepared.kind, prepared.trigger, tuple(p[3] for p in prepared.pictures), prepared.steps,
                              seed=random.randrange(2**31), nsfw_allowed=nsfw_allowed)
    width, height = size_for_aspect(1, 1, pixel_budget=entry.defaults.pixel_budget, step=entry.defaults.size_step)
    spec = JobSpec(parts=(PromptPart(sample_prompts(prepared.kind, prepared.trigger)[0]),), seed=request.seed,
                   width=width, height=height, model=entry.name,
                   extra=(("lora", prepared.name), ("trigger", prepared.trigger)))
    async with sessions() as session, session.begin():
        await admit(session=session, user_id=user.id, guild_id=guild_id, role_ids=requester.role_ids)
        await _check_caps(session, user.id, guild_id)
        try:
            new = await create_job(
                session=session, user_id=user.id, spec=spec, model=entry.name, lane=Lane.FAST, cost=prepared.cost,
                kind=JobKind.TRAIN, guild_id=guild_id, channel_id=requester.channel_id,
                interaction_id=requester.interaction_id, interaction_token=requester.interaction_token,
                interaction_created_at=requester.interaction_created_at, private=True,
            )
        except InsufficientCredits as exc:
            raise Refused(f"Training costs {prepared.cost} credits; you have {exc.balance}.",
                          reason=RefusalReason.CREDITS) from None
        if not new.created:
            raise Refused("This training was started already.", reason=RefusalReason.INPUT)
        try:
            row = await loras.create_training(
                session=session, user_id=user.id, guild_id=guild_id, name=prepared.name, trigger=prepared.trigger,
                kind=prepared.kind.value, model=entry.name, request=request.to_dict(), job_id=new.job.id,
            )
        except loras.LoraNameTaken as taken:
            raise Refused(f"The {taken.what} was taken meanwhile; run `/train` again with another. "
                          "Nothing was charged.", reason=RefusalReason.INPUT) from None
        await loras.add_pictures(session=session, lora_id=row.id, pictures=list(prepared.pictures))
        balance = await balance_of(session=session, user_id=user.id)
        job = new.job
    await publisher.publish(sessions=sessions, job_ids=[job.id])
    async with sessions() as session:
        queued = queued_job(job, await queue_position(session=session, job=job))
    return Submission(jobs=(queued,), created=True, balance=balance)


async def _check_caps(session: AsyncSession, user_id: int, guild_id: int | None) -> None:
    since = datetime.now(UTC) - timedelta(days=1)
    if await loras.trainings_in_progress(session=session, user_id=user_id):
        raise Refused("You have a training in progress already; start the next when it is done.",
                      reason=RefusalReason.CAPS)
    if await loras.trainings_since(session=session, since=since, user_id=user_id) >= USER_TRAININGS_PER_DAY:
        raise Refused(f"You have trained {USER_TRAININGS_PER_DAY} LoRAs in the last day; try again tomorrow.",
                      reason=RefusalReason.CAPS)
    if guild_id is not None and await loras.trainings_since(
        session=session, since=since, guild_id=guild_id
    ) >= SERVER_TRAININGS_PER_DAY:
        raise Refused(f"This server has trained {SERVER_TRAININGS_PER_DAY} LoRAs in the last day; try again "
                      "tomorrow.", reason=RefusalReason.CAPS)
