"""What the bot's messages say and which buttons they carry.

Plain functions from domain objects to text, embeds and button layouts; nothing here talks
to Discord or the database, so every message can be checked in a test by calling a function.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.services.jobs import ActiveJob, Overview
from bot.services.requests import QueuedJob, Submission
from bot.views.actions import Action
from core import kinds
from core import prompt as grammar
from core.kinds import Message
from core.models import ModelCatalog
from core.redaction import user_safe
from core.spec import JobKind, JobSpec, Lane
from core.workers import WorkerPresence, serving

MAX_CONTENT = 2000
PROMPT_SHOWN = 300
COLOR = discord.Colour.from_rgb(88, 101, 242)

def describe_kind(kind: JobKind, variant: str | None, parent_index: int | None = None) -> str:
    """What a job does, in the words of its button (``"Upscale (Subtle) of image #2"``)."""
    return kinds.title(kind, variant, parent_index)


def short_prompt(text: str, limit: int = PROMPT_SHOWN) -> str:
    """The prompt for a message line: one line, cut at ``limit`` characters, markdown-safe."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return discord.utils.escape_markdown(line) or "(image prompt)"


def credits(n: int) -> str:
    return f"{n} credit" if n == 1 else f"{n} credits"


def _lane(lane: Lane) -> str:
    return "fast" if lane is Lane.FAST else "relax (free)"


def _fit(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


# --------------------------------------------------------------------------- jobs


def queued_text(
    submission: Submission, *, user_id: int, title: str = "Imagine", on_behalf_of: int | None = None
) -> str:
    """The acknowledgement once a request is queued: what, where in the queue, what it cost.

    Args:
        on_behalf_of: the owner of the result a button was clicked on, when that is
            someone else: the reply says the copy runs on the clicker's credits.
    """
    first = submission.jobs[0]
    lines = [f"**{short_prompt(first.spec.prompt)}** — <@{user_id}>"]
    if len(submission.jobs) == 1:
        where = f"position {first.position}" if first.position else "starting"
        status = f"{title} queued ({where}) · {_lane(first.lane)} · {first.model}"
    else:
        positions = sorted(j.position for j in submission.jobs if j.position)
        where = f"positions {positions[0]}–{positions[-1]}" if positions else "starting"
        status = (
            f"{title}: {len(submission.jobs)} jobs queued ({where}) · {_lane(first.lane)} · {first.model}"
        )
    lines.append(status)
    if submission.total_cost:
        cost = f"Cost: {credits(submission.total_cost)} · balance {credits(submission.balance)}"
        lines.append(f"⚠️ **{cost}**" if submission.large else cost)
    if on_behalf_of is not None and on_behalf_of != user_id:
        lines.append(f"A copy of <@{on_behalf_of}>'s image, made on your credits.")
    return _fit("\n".join(lines))


def recipe_embed(job: QueuedJob) -> discord.Embed:
    """Everything that decides the pixels, so a result can be made again."""
    spec = job.spec
    embed = discord.Embed(colour=COLOR, description=_fit_embed(grammar.format(spec)))
    embed.add_field(name="Model", value=job.model)
    embed.add_field(
        name="Size", value=f"{spec.width}×{spec.height} ({spec.aspect_ratio[0]}:{spec.aspect_ratio[1]})"
    )
    embed.add_field(name="Seed", value=str(spec.seed) if spec.seed is not None else "random")
    if spec.steps is not None:
        embed.add_field(name="Steps", value=str(spec.steps))
    if spec.sampler:
        embed.add_field(name="Sampler", value=spec.sampler)
    if spec.cfg is not None:
        embed.add_field(name="CFG", value=f"{spec.cfg:g}")
    if spec.negative_prompt:
        embed.add_field(name="Negative", value=_fit_field(spec.negative_prompt), inline=False)
    if spec.loras:
        embed.add_field(
            name="LoRAs", value=", ".join(f"{lr.name}:{lr.weight:g}" for lr in spec.loras), inline=False
        )
    embed.set_footer(text=f"job {job.job_id}")
    return embed


def _fit_embed(text: str) -> str:
    return text if len(text) <= 4000 else text[:3999] + "…"


def _fit_field(text: str) -> str:
    return text if len(text) <= 1024 else text[:1023] + "…"


def progress_text(prompt: str, *, user_id: int, step: int, total: int, loss: float | None = None) -> str:
    """The acknowledgement while the job renders (or trains: then with its loss)."""
    percent = int(100 * step / total) if total else 0
    doing = "Training" if loss is not None else "Rendering"
    said = f", loss {loss:.4f}" if loss is not None else ""
    return f"**{short_prompt(prompt)}** — <@{user_id}>\n{doing}… step {step:,}/{total:,} ({percent}%{said})"


def result_text(
    spec: JobSpec,
    *,
    user_id: int,
    kind: JobKind,
    variant: str | None,
    parent_index: int | None,
    model: str,
    job_id: uuid.UUID,
    note: str | None = None,
) -> str:
    """The line above a finished grid or image."""
    title = describe_kind(kind, variant, parent_index)
    head = f"**{short_prompt(spec.prompt)}** — <@{user_id}>"
    facts = f"{title} · {model} · seed {spec.seed} · {spec.width}×{spec.height}"
    lines = [head, facts, f"-# job `{job_id}`"]
    if note:
        lines.append(note)
    return _fit("\n".join(lines))


def picked_text(spec: JobSpec, *, user_id: int, owner_id: int, index: int, job_id: uuid.UUID) -> str:
    """The line above one image taken from a grid (U1-U4)."""
    head = f"**{short_prompt(spec.prompt)}** — Image #{index + 1} <@{user_id}>"
    if owner_id != user_id:
        head += f" (from <@{owner_id}>'s grid)"
    return _fit(f"{head}\n-# job `{job_id}`")


def failed_text(
    prompt: str, *, user_id: int, error: str | None, refunded: int, job_id: uuid.UUID | None = None
) -> str:
    """A job that failed, what was given back, and the job id an admin can look up in the logs.

    The stored error is written for users already; it is cleaned once more here (no server
    path or token can reach a channel, whatever wrote it).
    """
    reason = user_safe(error or "the worker gave up", limit=200).rstrip(".")
    refund = f"Your {credits(refunded)} were refunded." if refunded else "Nothing was charged."
    ref = f" (job `{job_id}`)" if job_id is not None else ""
    return _fit(f"**{short_prompt(prompt)}** — <@{user_id}>\n❌ The render failed: {reason}. {refund}{ref}")


def cancelled_text(prompt: str, *, user_id: int, refunded: int) -> str:
    refund = f"{credits(refunded)} refunded" if refunded else "nothing was charged"
    return f"**{short_prompt(prompt)}** — <@{user_id}>\nCancelled ({refund})."


def stopped_text(prompt: str, *, user_id: int, refunded: int, cost: int, job_id: uuid.UUID) -> str:
    """A job its owner stopped while it rendered: what was charged and given back."""
    if cost == 0:
        money = "nothing was charged"
    elif refunded:
        money = f"{credits(refunded)} refunded for the part not rendered"
        if refunded < cost:
            money += f", {credits(cost - refunded)} charged"
    else:
        money = f"{credits(cost)} charged: it was nearly done"
    return f"**{short_prompt(prompt)}** — <@{user_id}>\nStopped before it finished ({money}). `{job_id}`"


WITHHELD_NOTE = (
    "🔞 This result was flagged as NSFW and this server withholds such images outside NSFW channels."
)
SPOILER_NOTE = "🔞 Flagged as NSFW: shown behind a spoiler."


# --------------------------------------------------------------------------- /info, /queue, /models


def overview_text(overview: Overview) -> str:
    """``/info``: credits, lane and what is queued and running."""
    settings = overview.settings
    lane = _lane(settings.lane or Lane.FAST)
    lines = [
        f"**Credits:** {overview.balance}",
        f"**Lane:** {lane}",
        f"**Model:** {settings.model or 'server default'} · **Aspect:** {settings.aspect_ratio or '1:1'}"
        f" · **Stylize:** {settings.stylize if settings.stylize is not None else 100}",
        f"**Remix mode:** {'on' if settings.remix else 'off'} · **Private mode:** {'on' if settings.private else 'off'}",
        f"**Running:** {len(overview.running)} · **Queued:** {len(overview.queued)}",
    ]
    return "\n".join(lines)


def queue_text(overview: Overview) -> str:
    """``/queue``: every running and queued job with its place."""
    if not overview.running and not overview.queued:
        return "You have no queued or running jobs."
    lines = ["**Your jobs**"]
    for number, job in enumerate(overview.running, start=1):
        lines.append(f"▶️ R{number}. rendering — {short_prompt(job.prompt, 80)} · `{job.job_id}`")
    for number, job in enumerate(overview.queued, start=1):
        lines.append(
            f"{number}. position {job.position} · {_lane(job.lane)} · {credits(job.cost)} — "
            f"{short_prompt(job.prompt, 80)} · `{job.job_id}`"
        )
    return _fit("\n".join(lines))


def models_text(
    catalog: ModelCatalog, allowed: Sequence[str] = (), workers: Sequence[WorkerPresence] | None = None
) -> str:
    """``/models``: the models this server may use and, with ``workers``, which are available now."""
    lines = ["**Models**"]
    for model in catalog:
        if allowed and model.name not in allowed:
            continue
        default = " (default)" if model.name == catalog.default_name else ""
        side = int(model.defaults.pixel_budget**0.5)
        desc = f" — {model.description}" if model.description else ""
        status = ""
        if workers:
            found = serving(workers, model.name)
            count, warm = len(found), sum(model.name in w.warm for w in found)
            status = f"🟢 {count} worker{'s' if count != 1 else ''}" if count else "⚪ no worker now"
            status += f" ({warm} warm) · " if warm else " · "
        lines.append(
            f"• {status}`{model.name}`{default} ({model.family.value}){desc} · about {side}×{side} · "
            f"{model.defaults.steps} steps"
        )
    if workers is not None and not workers:
        lines.append("No worker is online right now: jobs wait in the queue until one starts.")
    return _fit("\n".join(lines))


# --------------------------------------------------------------------------- buttons


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """One button: what it does, on which image, and how it looks."""

    action: str
    """The code in the custom id: an :class:`~bot.views.actions.Action` or a recipe button's."""
    index: int
    label: str | None
    emoji: str | None = None
    style: discord.ButtonStyle = discord.ButtonStyle.secondary
    row: int = 0


_STYLES = {
    "primary": discord.ButtonStyle.primary,
    "secondary": discord.ButtonStyle.secondary,
    "success": discord.ButtonStyle.success,
    "danger": discord.ButtonStyle.danger,
}


def _recipe_buttons(message: Message, indexes: Sequence[int]) -> list[ButtonSpec]:
    """The catalogue's job buttons for a message: per-image ones once for each image."""
    out = []
    for _, b in kinds.buttons_on(message):
        for i in indexes if b.per_image else indexes[:1]:
            label = b.label.format(n=i + 1) if b.label and b.per_image else b.label
            out.append(ButtonSpec(b.code, i, label, b.emoji, _STYLES[b.style], row=b.row))
    return out


def _by_row(buttons: list[ButtonSpec]) -> list[ButtonSpec]:
    # Stable: within a row, buttons keep the order they were listed in.
    return sorted(buttons, key=lambda b: b.row)


def grid_buttons(*, rerolls: bool = True) -> list[ButtonSpec]:
    """U1-U4 and 🔄 on the first row, then the catalogue's grid buttons (V1-V4).

    Args:
        rerolls: whether the job's recipe is queued again by 🔄 (:attr:`core.kinds.Recipe.rerolls`;
            a training's samples are not: it would train again), else no 🔄.
    """
    buttons = [ButtonSpec(Action.PICK, i, f"U{i + 1}", row=0) for i in range(4)]
    if rerolls:
        buttons.append(ButtonSpec(Action.REROLL, 0, None, "🔄", discord.ButtonStyle.primary, row=0))
    return _by_row(buttons + _recipe_buttons(Message.GRID, range(4)))


def single_image_buttons(index: int, *, public: bool) -> list[ButtonSpec]:
    """The buttons under one image: the catalogue's (upscale, vary, zoom, pan), Vary (Region),
    and favourite, publish and delete on the last row."""
    s = discord.ButtonStyle.secondary
    own = [
        ButtonSpec(Action.VARY_REGION, index, "Vary (Region)", row=1),
        ButtonSpec(Action.CUSTOM_ZOOM, index, "Custom Zoom", "🔍", row=2),
        ButtonSpec(Action.FAVORITE, index, None, "❤️", s, row=4),
        ButtonSpec(
            Action.PUBLISH,
            index,
            "Unpublish" if public else "Publish",
            "🌐",
            discord.ButtonStyle.success if not public else s,
            row=4,
        ),
        ButtonSpec(Action.DELETE, index, None, "🗑️", discord.ButtonStyle.danger, row=4),
    ]
    return _by_row(_recipe_buttons(Message.IMAGE, [index]) + own)


def queued_buttons() -> list[ButtonSpec]:
    """A cancel button on a queued job's message."""
    return [ButtonSpec(Action.CANCEL, 0, "Cancel", "✖️", discord.ButtonStyle.secondary)]


def queue_list_buttons(
    running: Sequence[ActiveJob], queued: Sequence[ActiveJob] = ()
) -> list[tuple[uuid.UUID, ButtonSpec]]:
    """``/queue``: a stop button per rendering job (it stops at its next step, the unrendered
    share refunded), then a cancel button per queued job; at most 25 in all."""
    labels = [(job, f"Stop R{n}") for n, job in enumerate(running, start=1)]
    labels += [(job, f"Cancel {n}") for n, job in enumerate(queued, start=1)]
    return [
        (job.job_id, ButtonSpec(Action.CANCEL, 1, label, None, discord.ButtonStyle.danger, row=place // 5))
        for place, (job, label) in enumerate(labels[:25])
    ]
