"""Turning a request into queued jobs: parse, moderate, check caps and credits, queue, publish.

Every way a request can be turned down raises :class:`~bot.services.errors.Refused`
before anything is charged. The credits are held in the same transaction that creates the
job and its outbox row, and the render task is sent only after that transaction commits,
so a job the worker sees always exists and is always paid for. The Discord interaction id
is the idempotency key: handling the same interaction twice queues one job.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import checks
from bot.services.checks import BannedWordsCache
from bot.services.errors import RefusalReason, Refused
from bot.services.publish import RenderPublisher
from bot.services.quotas import admit, lane_for
from bot.services.requests import ImageInput, QueuedJob, Requester, Submission
from bot.services.server_models import resolve_loras, validate_model
from bot.services.user_settings import UserSettings, apply_defaults, explicit_flags
from bot.services.workers import WorkerDirectory, check_served
from core import kinds, planning
from core import prompt as grammar
from core.kinds import Recipe
from core.metrics import metrics
from core.models import ModelCatalog, ModelEntry
from core.spec import ControlRef, JobKind, JobSpec, Lane
from db.errors import InsufficientCredits
from db.models import Guild, Job, JobStatus, User
from db.repositories import (
    balance_of,
    create_job,
    get_job,
    get_job_by_interaction,
    queue_position,
    upsert_guild,
    upsert_user,
)


class _HandledElsewhere(Exception):
    """The interaction's job was created by a concurrent call; roll back and report that one."""


@dataclass(frozen=True, slots=True)
class _Planned:
    spec: JobSpec
    model: ModelEntry
    lane: Lane
    cost: int


# --------------------------------------------------------------------------- entry points


async def record_refusal(
    *, sessions: async_sessionmaker[AsyncSession], requester: Requester, refusal: Refused
) -> None:
    """Keep the moderation event of a refusal made before deferring (others leave no record)."""
    if refusal.reason is not RefusalReason.MODERATION or refusal.detail is None:
        return
    user, guild = await requester_rows(sessions, requester)
    await checks.record_moderation(sessions, user, guild, refusal.detail)


async def submit_prompt(
    *,
    sessions: async_sessionmaker[AsyncSession],
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    requester: Requester,
    text: str | Sequence[str],
    images: Sequence[ImageInput] = (),
    kind: JobKind = JobKind.IMAGINE,
    variant: str | None = None,
    banned_words: BannedWordsCache | None = None,
    workers: WorkerDirectory | None = None,
) -> Submission:
    """Queue the jobs a prompt asks for (``/imagine``, ``/blend``, ``/describe``).

    Permutations (``{a, b}``) and ``--repeat`` queue several jobs, as do several prompts
    (Imagine all under a description); they are accepted or refused together.

    Args:
        text: the prompt as typed, or several prompts to queue at once.
        images: attached images; they become image prompts (before any URLs in the text).
        kind: ``IMAGINE``, ``BLEND``, ``DESCRIBE`` or ``EDIT``.
        variant: the recipe's variant (``EDIT``: ``None`` with a mask, ``"instruction"`` without).
        banned_words: refreshed with the server's banned words as read here.
        workers: the live workers; a model none of them serves is refused (None: no check).

    Raises:
        Refused: with the reason; nothing was charged.
    """
    existing = await already_handled(sessions, requester)
    if existing is not None:
        return existing
    typed_texts = [text] if isinstance(text, str) else list(text)
    # Attachments are image prompts: the grammar takes those as URLs before the text.
    texts = [" ".join([*checks.check_images(images), typed]).strip() for typed in typed_texts]
    for one in texts:
        checks.parse_prompt(one, catalog)  # a prompt that does not parse is refused before any I/O
    user, guild = await requester_rows(sessions, requester)
    if banned_words is not None and requester.guild_id is not None:
        banned_words.put(requester.guild_id, guild.banned_words if guild is not None else None)
    settings = UserSettings.from_json(user.settings)
    recipe = kinds.recipe(kind, variant)
    planned: list[_Planned] = []
    for typed, one in zip(typed_texts, texts, strict=True):
        written = explicit_flags(one)
        jobs = planning.plan_prompt(
            one,
            catalog,
            choose=lambda name, spec: _choose_model(catalog, guild, name or settings.model, spec),
            adjust=lambda spec, model, written=written: apply_defaults(  # type: ignore[misc]
                spec,
                settings,
                written=written,
                pixel_budget=model.defaults.pixel_budget,
                size_step=model.defaults.size_step,
            ),
        )
        these: list[_Planned] = []
        for job in jobs:
            spec = await resolve_loras(sessions=sessions, user_id=user.id, guild_id=guild.id if guild else None,
                                       spec=job.spec, model=job.model)
            checks.check_image_count(recipe, spec)
            checks.check_family(recipe, spec, job.model)
            lane = await _choose_lane(sessions, guild, spec.lane, settings)
            await check_served(workers, job.model.name, lane)
            cost = planning.price(spec, recipe, lane, job.model)
            these += [_Planned(spec, job.model, lane, cost)] * spec.repeat
        await checks.moderate(sessions, user, guild, [p.spec for p in these], typed=typed)
        planned += these
    return await _queue(
        sessions,
        publisher,
        requester,
        user_id=user.id,
        guild=guild,
        planned=planned,
        recipe=recipe,
        private=settings.private,
    )


async def submit_action(
    *,
    sessions: async_sessionmaker[AsyncSession],
    publisher: RenderPublisher,
    catalog: ModelCatalog,
    requester: Requester,
    parent_id: uuid.UUID,
    recipe: Recipe | None,
    index: int | None = None,
    remix_text: str | None = None,
    controls: tuple[ControlRef, ...] | None = None,
    workers: WorkerDirectory | None = None,
    mask_id: int | None = None,
) -> Submission:
    """Queue a job made from an earlier one (a button under a result).

    The new job belongs to the requester and is paid from their credits, whoever owns the
    parent job. With ``remix_text`` (remix mode) the prompt is replaced by the edited one.

    Args:
        parent_id: the job whose result the button was under.
        recipe: what to do with image ``index`` of that job; None rerolls it (🔄): the same
            recipe from the same sources with a new seed (:func:`core.kinds.reroll_of`).
        index: which of its images the action starts from (ignored for a reroll).
        controls: Use as Control's ``--cn`` controls: the image is the picture they follow
            (it replaces any image prompts of the parent's spec).
        mask_id: a drawn region's mask (the web gallery's editor, ``masks`` row).

    Raises:
        Refused: the parent is gone or not finished, or any refusal of
            :func:`submit_prompt`; nothing was charged.
    """
    existing = await already_handled(sessions, requester)
    if existing is not None:
        return existing
    async with sessions() as session:
        parent = await get_job(session=session, job_id=parent_id, with_images=True)
    if parent is None:
        raise Refused("That job no longer exists.", reason=RefusalReason.NOT_FOUND)
    if recipe is None:
        try:
            recipe = kinds.reroll_of(parent.kind, parent.variant)
        except kinds.UnknownRecipe:
            raise Refused("A training is not rerolled (it would train again): run `/train` for another. "
                          "Its samples can be upscaled and varied. Nothing was charged.",
                          reason=RefusalReason.INPUT) from None
        source_id, index = (parent.parent_id, parent.parent_index) if recipe.keeps_size else (None, None)
    else:
        source_id = parent.id
        if index is None or parent.status != JobStatus.DONE or not any(img.index == index for img in parent.images):
            shown = f"Image #{index + 1}" if index is not None else "The image"
            raise Refused(f"{shown} of that job is not available.", reason=RefusalReason.NOT_FOUND)
    user, guild = await requester_rows(sessions, requester)
    settings = UserSettings.from_json(user.settings)
    base = dataclasses.replace(JobSpec.from_dict(parent.params), seed=None, repeat=1, lane=None)
    model = _choose_model(catalog, guild, parent.model, base)
    spec = base
    if remix_text is not None:
        try:
            spec = grammar.parse(
                remix_text, pixel_budget=model.defaults.pixel_budget, size_step=model.defaults.size_step
            )
        except grammar.PromptError as exc:
            raise Refused(
                f"I could not read the edited prompt. {checks.sentence(str(exc))}", reason=RefusalReason.PROMPT
            ) from None
        spec = dataclasses.replace(spec, seed=None, repeat=1)
        if recipe.keeps_size:
            # The new images grow from the old one, so they keep its size.
            spec = dataclasses.replace(
                spec, width=base.width, height=base.height, aspect_ratio=base.aspect_ratio
            )
        checks.check_image_count(recipe, spec)
        if spec.model is not None:
            model = _choose_model(catalog, guild, spec.model, spec)
    spec = dataclasses.replace(spec, model=model.name)
    if controls is not None:
        spec = dataclasses.replace(spec, controls=controls, image_urls=(), image_weight=None)
    spec = dataclasses.replace(spec, mask_id=mask_id)
    spec = await resolve_loras(sessions=sessions, user_id=user.id, guild_id=guild.id if guild else None, spec=spec,
                               model=model)
    checks.check_family(recipe, spec, model)
    lane = await _choose_lane(sessions, guild, spec.lane, settings)
    await check_served(workers, model.name, lane)
    cost = planning.price(spec, recipe, lane, model)
    await checks.moderate(sessions, user, guild, [spec], typed=remix_text)
    return await _queue(
        sessions,
        publisher,
        requester,
        user_id=user.id,
        guild=guild,
        planned=[_Planned(spec, model, lane, cost)],
        recipe=recipe,
        private=settings.private,
        parent_id=source_id,
        parent_index=index,
    )


# --------------------------------------------------------------------------- steps


async def already_handled(
    sessions: async_sessionmaker[AsyncSession], requester: Requester
) -> Submission | None:
    if requester.interaction_id is None:
        return None
    async with sessions() as session:
        job = await get_job_by_interaction(session=session, interaction_id=requester.interaction_id)
        if job is None:
            return None
        balance = await balance_of(session=session, user_id=job.user_id)
        position = await queue_position(session=session, job=job)
    return Submission(jobs=(queued_job(job, position),), created=False, balance=balance)


async def requester_rows(
    sessions: async_sessionmaker[AsyncSession], requester: Requester
) -> tuple[User, Guild | None]:
    async with sessions() as session, session.begin():
        user = await upsert_user(session=session, discord_id=requester.user_id)
        guild = (
            await upsert_guild(session=session, discord_id=requester.guild_id) if requester.guild_id else None
        )
    return user, guild


def _choose_model(catalog: ModelCatalog, guild: Guild | None, name: str | None, spec: JobSpec) -> ModelEntry:
    """The model a job runs on, checked against the server's list (its LoRAs: :func:`resolve_loras`)."""
    return validate_model(name, guild, catalog=catalog)


async def _choose_lane(
    sessions: async_sessionmaker[AsyncSession],
    guild: Guild | None,
    requested: Lane | None,
    settings: UserSettings,
) -> Lane:
    async with sessions() as session:
        return await lane_for(
            session=session,
            guild_id=guild.id if guild is not None else None,
            requested=requested,
            user_settings=settings,
        )


async def _queue(
    sessions: async_sessionmaker[AsyncSession],
    publisher: RenderPublisher,
    requester: Requester,
    *,
    user_id: int,
    guild: Guild | None,
    planned: Sequence[_Planned],
    recipe: Recipe,
    private: bool,
    parent_id: uuid.UUID | None = None,
    parent_index: int | None = None,
) -> Submission:
    created: list[Job] = []
    try:
        async with sessions() as session, session.begin():
            # Bans, the grants due (they may pay for this job) and the caps, in the
            # transaction that holds the credits: it locks the user's row, so two requests
            # of one user at once cannot both slip under a cap.
            await admit(
                session=session,
                user_id=user_id,
                guild_id=guild.id if guild is not None else None,
                role_ids=requester.role_ids,
                adding=len(planned),
            )
            balance = await balance_of(session=session, user_id=user_id)
            total = sum(p.cost for p in planned)
            if total > balance:
                raise Refused(_credits_message(total, balance, len(planned)), reason=RefusalReason.CREDITS)
            for number, plan in enumerate(planned):
                try:
                    new = await create_job(
                        session=session,
                        user_id=user_id,
                        spec=plan.spec,
                        model=plan.model.name,
                        lane=plan.lane,
                        cost=plan.cost,
                        kind=recipe.kind,
                        variant=recipe.variant,
                        parent_id=parent_id,
                        parent_index=parent_index,
                        guild_id=guild.id if guild is not None else None,
                        channel_id=requester.channel_id,
                        # One interaction, one key: the first job carries it, the others
                        # (permutations, --repeat) share its token for delivery.
                        interaction_id=requester.interaction_id if number == 0 else None,
                        interaction_token=requester.interaction_token,
                        interaction_created_at=requester.interaction_created_at,
                        private=private,
                    )
                except InsufficientCredits as exc:
                    raise Refused(
                        _credits_message(total, exc.balance, len(planned)), reason=RefusalReason.CREDITS
                    ) from None
                if not new.created:
                    # Another process handled this interaction while we were checking.
                    raise _HandledElsewhere
                created.append(new.job)
            balance -= total
    except _HandledElsewhere:
        existing = await already_handled(sessions, requester)
        assert existing is not None
        return existing
    await publisher.publish(sessions=sessions, job_ids=[job.id for job in created])
    for job in created:
        metrics().submitted.labels(job.kind.value, job.lane.value, job.model).inc()
    async with sessions() as session:
        jobs = tuple([queued_job(job, await queue_position(session=session, job=job)) for job in created])
    return Submission(jobs=jobs, created=True, balance=balance)


def _credits_message(total: int, balance: int, count: int) -> str:
    what = f"These {count} jobs cost" if count > 1 else "This job costs"
    return (
        f"{what} {_credits(total)} and you have {_credits(balance)}. Nothing was charged. "
        "Add `--relax` to use the free relax lane if this server allows it, or ask a server "
        "admin for credits."
    )


def _credits(n: int) -> str:
    return f"{n} credit" if n == 1 else f"{n} credits"


def queued_job(job: Job, position: int) -> QueuedJob:
    return QueuedJob(
        job_id=job.id,
        kind=job.kind,
        variant=job.variant,
        spec=JobSpec.from_dict(job.params),
        model=job.model,
        lane=job.lane,
        cost=job.cost,
        position=position,
    )
