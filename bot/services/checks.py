"""The checks of a request that need no database: attachments, grammar, moderation, what the
model's family can do, and the server's banned words as last seen.

They run twice: before the interaction is deferred (:func:`precheck_prompt`, so a refusal is
the private first response) and again in :mod:`bot.services.submit` with everything known.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.errors import RefusalReason, Refused
from bot.services.requests import ImageInput
from core import planning
from core import prompt as grammar
from core.controls import control_refusal
from core.families import Task, family
from core.kinds import Recipe
from core.models import ModelCatalog, ModelEntry
from core.moderation import GuildWordList, ModerationError, check_prompt
from core.spec import JobSpec
from db.models import Guild, User
from db.repositories import record_moderation_event

MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024


class BannedWordsCache:
    """Each server's banned words as last read from the database, for refusals before deferring.

    Filled by every submission (which reads the server's row anyway) and by the admin word
    commands. An entry older than :attr:`TTL_S` is not used, so a change made through another
    bot process counts within that time; until then the database check after deferring still
    applies it.
    """

    TTL_S = 300.0

    def __init__(self) -> None:
        self._entries: dict[int, tuple[float, GuildWordList | None]] = {}

    def put(self, guild_discord_id: int, entries: Sequence[str] | None) -> None:
        words = GuildWordList(tuple(entries)) if entries else None
        self._entries[guild_discord_id] = (time.monotonic(), words)

    def get(self, guild_discord_id: int | None) -> GuildWordList | None:
        """The server's list, or None when it has none or it is not known (recently)."""
        if guild_discord_id is None:
            return None
        found = self._entries.get(guild_discord_id)
        if found is None or time.monotonic() - found[0] > self.TTL_S:
            return None
        return found[1]


def precheck_prompt(
    *,
    catalog: ModelCatalog,
    text: str,
    images: Sequence[ImageInput] = (),
    banned: GuildWordList | None = None,
    image_hosts: frozenset[str] | None = None,
) -> None:
    """The refusals of :func:`submit_prompt` that need no I/O: attachments, grammar, image
    links' hosts, moderation.

    Runs in well under a millisecond, so a command answers these as its first response,
    ephemeral, before deferring (the user sees the reason whatever Discord does with
    follow-ups later). :func:`submit_prompt` runs the same checks again.

    Args:
        banned: the server's banned words if known (:class:`BannedWordsCache`).
        image_hosts: the hosts workers fetch image links from; a link to another would fail
            on the worker after charging (:func:`check_image_hosts`). None: any host.

    Raises:
        Refused: with the reason.
    """
    typed = text
    text = " ".join([*check_images(images), text]).strip()
    for spec in parse_prompt(text, catalog):
        check_image_hosts(spec, image_hosts)
        check_moderation(spec, banned, typed=typed)


def check_image_hosts(spec: JobSpec, hosts: frozenset[str] | None) -> None:
    """Refuse image links (image prompts, ``--sref``, ``--cref``) to a host workers may not fetch
    from (``IMAGE_URL_HOSTS``; :func:`gpu_worker.fetch.fetch_image` checks again, with each
    redirect and address). Attachments are links to Discord's CDN, one of the default hosts.

    Raises:
        Refused: ``INPUT``, naming the host and the allowed ones.
    """
    if hosts is None:
        return
    for url in (*spec.image_urls, *spec.style_refs, *spec.character_refs):
        host = (urlsplit(url).hostname or "").lower()
        if host not in hosts:
            allowed = ", ".join(f"`{h}`" for h in sorted(hosts)) or "none"
            raise Refused(
                f"Image links can only come from {allowed} on this bot; `{host or url[:80]}` is not one of "
                "them. Attach the image instead. Nothing was charged.",
                reason=RefusalReason.INPUT,
            )


async def record_moderation(
    sessions: async_sessionmaker[AsyncSession], user: User, guild: Guild | None, detail: dict[str, Any]
) -> None:
    async with sessions() as session, session.begin():
        await record_moderation_event(
            session=session,
            kind="minor_filter" if detail.get("rule") == "minors" else "banned_word",
            user_id=user.id,
            guild_id=guild.id if guild is not None else None,
            detail=detail,
        )


def parse_prompt(text: str, catalog: ModelCatalog) -> list[JobSpec]:
    try:
        return planning.parse_for(text, catalog)
    except grammar.PromptError as exc:
        raise Refused(
            f"I could not read that prompt. {sentence(str(exc))}", reason=RefusalReason.PROMPT
        ) from None


def check_moderation(spec: JobSpec, banned: GuildWordList | None, *, typed: str | None = None) -> None:
    """The built-in filter and the server's words on the parsed prompt and its ``--no`` text,
    and the built-in filter once more on the request as typed (``typed``), which the parser
    has not yet rearranged (spaced letters, flags)."""
    try:
        check_prompt(spec.prompt, negative=spec.negative_prompt, banned=banned)
        if typed is not None:
            check_prompt(typed)
    except ModerationError as exc:
        raise Refused(
            exc.reason,
            reason=RefusalReason.MODERATION,
            detail={"prompt": typed or spec.prompt, "rule": exc.rule, "reason": exc.reason},
        ) from None


def check_family(recipe: Recipe, spec: JobSpec, model: ModelEntry) -> None:
    """Refuse a job the model's family cannot render as asked: a pipeline task, a ``--sampler``,
    a describe job on a model without a captioner, ``--cn`` controls it has no ControlNet or
    map maker for,
    ``--clip-skip`` or multi-prompt weights it lacks, ``--no`` / ``--stylize`` on a render
    without guidance, or ``--style raw`` on a model without a house style (where they would
    change nothing)."""
    fam = family(model.family)
    if recipe.describes:
        # No pipeline runs: the model's captioner reads the image; its render flags do not apply.
        if model.captioner is None:
            raise Refused(
                f"`{model.name}` has no captioner, so it cannot describe images. Nothing was charged; "
                "choose a model that has one with `model:`, or ask the server's operator to add a "
                "`captioner` to it in models.toml.",
                reason=RefusalReason.MODEL,
            )
        return
    refusal = control_refusal(
        model=model.name,
        family_title=fam.title,
        family_has_controlnet=fam.controlnet,
        offered=model.controlnets,
        estimators=model.estimators,
        controls=[(c.kind, c.as_is) for c in spec.controls],
        max_controls=fam.max_controls,
    )
    if refusal is not None:
        raise Refused(f"{refusal}. Nothing was charged.", reason=RefusalReason.MODEL)
    if spec.raw and not model.defaults.has_house_style:
        raise Refused(
            f"`{model.name}` adds no house style to prompts, so `--style raw` would change nothing; "
            "remove it. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    if spec.clip_skip is not None and not fam.clip_skip:
        raise Refused(
            f"`{model.name}` is a {fam.title} model, whose prompts do not go through CLIP layers "
            "`--clip-skip` could skip; remove it. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    if spec.sampler is not None and spec.sampler not in fam.samplers:
        raise Refused(
            f"`{model.name}` is a {fam.title} model, which cannot use the sampler `{spec.sampler}`; "
            f"it can use {', '.join(f'`{s}`' for s in fam.samplers)}. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    if not fam.weights and any(part.weight != 1.0 for part in spec.parts or ()):
        raise Refused(
            f"`{model.name}` is a {fam.title} model, whose text encoder (a language model) cannot blend "
            "weighted prompt parts (`::2`, `::-0.5`); write the prompt without weights. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    if spec.weird and not fam.weights:
        raise Refused(
            f"`{model.name}` is a {fam.title} model, whose language-model text encoder gives `--weird` no "
            "prompt embedding to move; remove it. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    if spec.negative_prompt and not fam.negative_prompt:
        raise Refused(
            f"`{model.name}` is a {fam.title} model, whose guidance is built into the model: it takes no "
            "negative prompt, so `--no` would change nothing; say what you want instead. Nothing was charged.",
            reason=RefusalReason.PROMPT,
        )
    cfg = spec.cfg if spec.cfg is not None else model.defaults.cfg
    if cfg <= 1.0:
        idle = [flag for flag, given in (("`--no`", bool(spec.negative_prompt)), ("`--stylize`", spec.stylize != 100))
                if given]
        if idle:
            raise Refused(
                f"`{model.name}` renders without guidance (cfg {cfg:g}), so {' and '.join(idle)} would change "
                "nothing; remove it, or add `--cfg 2` or more to guide the render. Nothing was charged.",
                reason=RefusalReason.PROMPT,
            )
    task = recipe.task_for(spec)
    if not fam.supports(task):
        what = "image prompts" if task is not recipe.task else recipe.title
        hint = (
            " (an editing model, such as FLUX.1 Kontext), or attach a `mask` (white where the picture should "
            "change) to repaint that part with this one"
            if task is Task.EDIT
            else ""
        )
        raise Refused(
            f"`{model.name}` is a {fam.title} model, which cannot do {what}. Nothing was charged; "
            f"choose another model with `--model`{hint}.",
            reason=RefusalReason.MODEL,
        )


def check_image_count(recipe: Recipe, spec: JobSpec) -> None:
    if recipe.image_count is None:
        return
    low, high = recipe.image_count
    if not low <= len(spec.image_urls) <= high:
        raise Refused(
            f"{recipe.title} takes {low} to {high} images; this prompt has {len(spec.image_urls)}.",
            reason=RefusalReason.PROMPT,
        )


def check_images(images: Sequence[ImageInput]) -> tuple[str, ...]:
    for image in images:
        if not (image.content_type or "").startswith("image/"):
            raise Refused(
                f"`{image.filename}` is not an image (PNG, JPEG, WebP or GIF).", reason=RefusalReason.INPUT
            )
        if image.size > MAX_ATTACHMENT_BYTES:
            raise Refused(
                f"`{image.filename}` is {image.size / 2**20:.0f} MiB; images may be at most "
                f"{MAX_ATTACHMENT_BYTES // 2**20} MiB.",
                reason=RefusalReason.INPUT,
            )
    return tuple(image.url for image in images)


async def moderate(
    sessions: async_sessionmaker[AsyncSession],
    user: User,
    guild: Guild | None,
    specs: Sequence[JobSpec],
    *,
    typed: str | None = None,
) -> None:
    banned = GuildWordList(tuple(guild.banned_words)) if guild is not None and guild.banned_words else None
    for spec in specs:
        try:
            check_moderation(spec, banned, typed=typed)
        except Refused as refusal:
            await record_moderation(sessions, user, guild, refusal.detail or {})
            raise


def sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."
