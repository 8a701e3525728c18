"""The job-kind catalogue: one record per thing a job can do, and everything derived from it.

A :class:`Recipe` is one kind with one variant (``upscale``/``creative``, ``pan``/``left``,
...). It says where the job's source images come from, whether its result is a 2x2 grid,
how a member asks for it (a slash command, a button and its look, the region menu), its
title, its cost factor, whether remix mode edits its prompt first, and the name of the
worker operation that renders it. The bot draws its button rows, action codes, titles and
grid handling from here, :mod:`core.costs` its cost factors, and the GPU worker dispatches
through its table of operations by :attr:`Recipe.operation`; a (kind, variant) that is not
here is a rejected job, never a silent fallback.

Reroll (🔄) is not a kind: it queues the recipe of the job it is under again, with the same
sources and a new seed (:func:`reroll_of`). ``reroll`` rows written before that rule are
still read (:attr:`Recipe.legacy`) and render as a text-to-image job, as they always did.

Adding a kind: one :class:`Recipe` (or one per variant) below, and its operation in
``gpu_worker/operations.py``; ``tests/core/test_kinds.py`` checks that the pieces meet.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from core.families import Task
from core.spec import JobKind, JobSpec


class Source(enum.StrEnum):
    """Where a job's input images come from."""

    PROMPT = "prompt"
    """The image prompts of its spec (attachments and URLs of ``/imagine``, ``/blend``); may be none."""
    PARENT_IMAGE = "parent image"
    """One image of the job it was made from (``parent_id`` and ``parent_index``)."""
    TRAINING_SET = "training set"
    """The pictures of the LoRA a training job trains (``training_pictures`` rows)."""


class Message(enum.StrEnum):
    """Which result message carries a button."""

    GRID = "grid"
    """A 2x2 grid (one button per image when :attr:`Button.per_image`)."""
    IMAGE = "image"
    """One image picked from a grid (U1-U4) or an upscale."""


@dataclass(frozen=True, slots=True)
class Button:
    """A button that queues a recipe, as it looks under a result.

    ``code`` is the action in the button's custom id (``img:v1:<code>:<job>:<index>``); a
    code, once shipped, never changes meaning, since old messages keep their buttons.
    """

    code: str
    message: Message
    row: int
    label: str | None = None
    """For per-image buttons a format with ``{n}`` (the image number, 1-4)."""
    emoji: str | None = None
    style: str = "secondary"
    """A Discord button style name: ``primary``, ``secondary``, ``success`` or ``danger``."""
    per_image: bool = False


@dataclass(frozen=True, slots=True)
class Recipe:
    """One kind with one variant: everything the bot, the costs and the worker need to know."""

    kind: JobKind
    variant: str | None
    title: str
    """What the job is called in messages (``"Upscale (Subtle)"``)."""
    operation: str
    """The worker operation that renders it (``gpu_worker/operations.py``)."""
    task: Task
    """The pipeline task its operation runs (a model family may lack one: :mod:`core.families`)."""
    source: Source
    grid: bool
    """Four images and their 2x2 grid; else one image."""
    command: str | None = None
    """The slash command that queues it (``/imagine``), if any."""
    buttons: tuple[Button, ...] = ()
    menu_label: str | None = None
    """Its label in the Vary (Region) menu, for the recipes that menu offers."""
    arg: float | str | tuple[float, ...] | None = None
    """What the operation needs to know of the variant (a zoom factor, a direction, a box)."""
    image_count: tuple[int, int] | None = None
    """How many source images it takes (least, most), where that is fixed."""
    cost_factor: float = 1.0
    """GPU work against an imagine of the same size and steps."""
    remixable: bool = False
    """With remix mode on, its buttons open a form to edit the prompt first."""
    legacy: bool = False
    """Only read from old rows; never queued any more."""
    describes: bool = False
    """Its result is prompts read from its source image by the model's captioner
    (:mod:`core.captioners`), not images: it runs no pipeline task, and a model without a
    captioner refuses it."""
    asks_prompt: bool = False
    """Its button opens a form for a new prompt first (Edit…: the instruction)."""
    asks_controls: bool = False
    """Its button opens a form for the prompt and the ``--cn`` controls first: the source
    image is the picture its ControlNets follow."""
    rerolls: bool = True
    """🔄 under its result queues it again (a training does not: it would train again)."""

    @property
    def keeps_size(self) -> bool:
        """The new images grow from an old one, so a remixed prompt keeps that image's size."""
        return self.source is Source.PARENT_IMAGE

    @property
    def key(self) -> tuple[JobKind, str | None]:
        return (self.kind, self.variant)

    def task_for(self, spec: JobSpec) -> Task:
        """The task a job of this recipe runs: a prompt with image prompts starts from them
        (with ``--cn`` its pictures are controls, and it starts from noise)."""
        if self.source is Source.PROMPT and self.task is Task.TEXT2IMG and spec.image_urls and not spec.controls:
            return Task.IMG2IMG
        return self.task


def _single(kind: JobKind, variant: str, title: str, operation: str, **more: object) -> Recipe:
    return Recipe(kind, variant, title, operation, Task.IMG2IMG, Source.PARENT_IMAGE, grid=False, **more)  # type: ignore[arg-type]


def _from_image(
    kind: JobKind, variant: str, title: str, operation: str, task: Task, **more: object
) -> Recipe:
    return Recipe(kind, variant, title, operation, task, Source.PARENT_IMAGE, grid=True, **more)  # type: ignore[arg-type]


def _image_button(code: str, row: int, label: str | None = None, emoji: str | None = None) -> Button:
    return Button(code, Message.IMAGE, row, label, emoji)


CUSTOM_ZOOM_STEP = 0.05
CUSTOM_ZOOM_RANGE = (1.1, 2.0)
"""Custom Zoom takes factors from 1.1 to 2 (a 1x "zoom" would paint nothing new), to the
nearest 0.05: each factor is one recipe (variant ``"1.35"``), so jobs keep fixed keys."""


def custom_zoom_recipe(factor: float) -> Recipe:
    """The zoom recipe of a Custom Zoom factor (rounded to :data:`CUSTOM_ZOOM_STEP`).

    Raises:
        ValueError: outside :data:`CUSTOM_ZOOM_RANGE`, or not a number.
    """
    low, high = CUSTOM_ZOOM_RANGE
    if not (low - 1e-9 <= factor <= high + 1e-9):  # also refuses NaN
        raise ValueError(f"--zoom takes {low:g} to {high:g}, not {factor:g}")
    return recipe(JobKind.ZOOM, f"{round(factor / CUSTOM_ZOOM_STEP) * CUSTOM_ZOOM_STEP:g}")


DRAWN = "drawn"
"""The region variant whose mask a member painted (the region menu's "Draw…")."""
_REGIONS: tuple[tuple[str, str, tuple[float, float, float, float]], ...] = (
    # (variant, menu label, (left, top, right, bottom) as fractions of the image)
    ("left", "Left half", (0.0, 0.0, 0.5, 1.0)),
    ("right", "Right half", (0.5, 0.0, 1.0, 1.0)),
    ("top", "Top half", (0.0, 0.0, 1.0, 0.5)),
    ("bottom", "Bottom half", (0.0, 0.5, 1.0, 1.0)),
    ("center", "Centre", (0.25, 0.25, 0.75, 0.75)),
)

RECIPES: tuple[Recipe, ...] = (
    Recipe(JobKind.IMAGINE, None, "Imagine", "imagine", Task.TEXT2IMG, Source.PROMPT, grid=True, command="/imagine"),
    Recipe(JobKind.BLEND, None, "Blend", "blend", Task.IMG2IMG, Source.PROMPT, grid=True, command="/blend",
           image_count=(2, 5)),
    _single(
        JobKind.UPSCALE, "subtle", "Upscale (Subtle)", "upscale", arg="subtle",
        # One image at 2x the side: 4x the pixels of one image = the work of one 4-image render.
        buttons=(_image_button("ups", 0, "Upscale (Subtle)"),),
    ),
    _single(
        JobKind.UPSCALE, "creative", "Upscale (Creative)", "upscale", arg="creative",
        buttons=(_image_button("upc", 0, "Upscale (Creative)"),),
    ),
    _from_image(
        JobKind.VARIATION, "subtle", "Variations (Subtle)", "variation", Task.IMG2IMG, arg="subtle", remixable=True,
        buttons=(_image_button("vs", 1, "Vary (Subtle)"),),
    ),
    _from_image(
        JobKind.VARIATION, "strong", "Variations (Strong)", "variation", Task.IMG2IMG, arg="strong", remixable=True,
        buttons=(
            Button("v", Message.GRID, 1, "V{n}", per_image=True),
            _image_button("vst", 1, "Vary (Strong)"),
        ),
    ),
    _from_image(
        JobKind.ZOOM, "2", "Zoom Out 2x", "zoom", Task.INPAINT, arg=2.0, remixable=True,
        buttons=(_image_button("z2", 2, "Zoom Out 2x", "🔍"),),
    ),
    _from_image(
        JobKind.ZOOM, "1.5", "Zoom Out 1.5x", "zoom", Task.INPAINT, arg=1.5, remixable=True,
        buttons=(_image_button("z15", 2, "Zoom Out 1.5x", "🔍"),),
    ),
    *(
        # Custom Zoom's factors (its form takes --zoom 1.1-2); 2 and 1.5 are the buttons' above.
        _from_image(JobKind.ZOOM, variant, f"Zoom Out {variant}x", "zoom", Task.INPAINT, arg=float(variant),
                    remixable=True)
        for variant in (f"{CUSTOM_ZOOM_STEP * k:g}" for k in range(22, 41))
        if variant not in ("1.5", "2")
    ),
    _from_image(
        JobKind.ZOOM, "square", "Make Square", "square", Task.INPAINT, remixable=True,
        buttons=(_image_button("sq", 2, "Make Square", "↔️"),),
    ),
    *(
        _from_image(JobKind.PAN, direction, f"Pan {direction.title()}", "pan", Task.INPAINT, arg=direction,
                    remixable=True, buttons=(_image_button(code, 3, None, emoji),))
        for direction, code, emoji in (
            ("left", "pl", "⬅️"), ("right", "pr", "➡️"), ("up", "pu", "⬆️"), ("down", "pd", "⬇️")
        )
    ),
    *(
        _from_image(JobKind.REGION, name, f"Vary (Region: {name})", "region", Task.INPAINT, arg=box,
                    menu_label=label, remixable=True)
        for name, label, box in _REGIONS
    ),
    # Vary (Region) with a mask painted in the web gallery's editor (JobSpec.mask_id).
    # Its menu entry answers with a link to the editor (the bot offers it where one is set up).
    _from_image(JobKind.REGION, DRAWN, "Vary (Region: drawn)", "region", Task.INPAINT, remixable=True,
                menu_label="Draw… (in your browser)"),
    # /edit: the member's picture and mask (white = change) are the prompt's two images.
    Recipe(JobKind.EDIT, None, "Edit (Mask)", "masked_edit", Task.INPAINT, Source.PROMPT, grid=True,
           command="/edit", image_count=(2, 2)),
    # /edit without a mask, and Edit… under an image: the prompt is an instruction to an editing model.
    Recipe(JobKind.EDIT, "instruction", "Edit (Instruction)", "instruction_edit", Task.EDIT, Source.PROMPT,
           grid=True, command="/edit", image_count=(1, 1)),
    _from_image(JobKind.EDIT, "image", "Edit", "instruction_edit", Task.EDIT, asks_prompt=True,
                buttons=(_image_button("ed", 3, "Edit…", "✏️"),)),
    Recipe(JobKind.DESCRIBE, None, "Describe (Upload)", "describe", Task.IMG2IMG, Source.PROMPT, grid=False,
           command="/describe", image_count=(1, 1), cost_factor=0.25, describes=True),
    Recipe(JobKind.IMAGINE, "control", "Imagine (Control)", "imagine", Task.TEXT2IMG, Source.PARENT_IMAGE,
           grid=True, asks_controls=True, buttons=(_image_button("uc", 4, "Use as Control", "🎛️"),)),
    _single(
        JobKind.DESCRIBE, "image", "Describe", "describe", cost_factor=0.25, describes=True,
        buttons=(_image_button("dsc", 4, "Describe", "📝"),),
    ),
    Recipe(JobKind.REROLL, None, "Reroll", "imagine", Task.TEXT2IMG, Source.PROMPT, grid=True, legacy=True),
    # /train: a LoRA from a member's pictures; its grid is four samples drawn with the new LoRA.
    Recipe(JobKind.TRAIN, None, "Train LoRA", "train_lora", Task.TEXT2IMG, Source.TRAINING_SET, grid=True,
           command="/train", image_count=(5, 40), rerolls=False),
)  # fmt: skip

_BY_KEY: dict[tuple[JobKind, str | None], Recipe] = {r.key: r for r in RECIPES}
_BY_CODE: dict[str, tuple[Recipe, Button]] = {b.code: (r, b) for r in RECIPES for b in r.buttons}


class UnknownRecipe(LookupError):
    """A (kind, variant) that the catalogue does not hold."""


def recipe(kind: JobKind, variant: str | None = None) -> Recipe:
    """The recipe of a job.

    Raises:
        UnknownRecipe: no such kind and variant (the job must be refused, not guessed at).
    """
    try:
        return _BY_KEY[(kind, variant)]
    except KeyError:
        known = [r.variant for r in RECIPES if r.kind is kind and not r.legacy]
        if not known:
            raise UnknownRecipe(f"there are no {kind.value} jobs") from None
        listed = ", ".join(str(v) for v in known)
        raise UnknownRecipe(f"unknown {kind.value} variant {variant!r}; known: {listed}") from None


def button_recipe(code: str) -> tuple[Recipe, Button] | None:
    """The recipe a button code queues, and that button; None for codes that queue no job."""
    return _BY_CODE.get(code)


def buttons_on(message: Message) -> list[tuple[Recipe, Button]]:
    """The job buttons a result message carries, in catalogue order."""
    return [(r, b) for r in RECIPES for b in r.buttons if b.message is message]


def menu_recipes() -> list[Recipe]:
    """The recipes the Vary (Region) menu offers."""
    return [r for r in RECIPES if r.menu_label is not None]


def reroll_of(kind: JobKind, variant: str | None) -> Recipe:
    """What 🔄 under a job of this kind queues: the same recipe (legacy rows: an imagine).

    Raises:
        UnknownRecipe: the recipe is not rerolled (a training).
    """
    found = recipe(kind, variant)
    if not found.rerolls:
        raise UnknownRecipe(f"{found.title} is not rerolled")
    return recipe(JobKind.IMAGINE) if found.legacy else found


def title(kind: JobKind, variant: str | None, parent_index: int | None = None) -> str:
    """What a job does, in the words of its button (``"Upscale (Subtle) of image #2"``)."""
    try:
        text = recipe(kind, variant).title
    except UnknownRecipe:
        text = kind.value.title()
    if parent_index is not None:
        text += f" of image #{parent_index + 1}"
    return text


_ZOOM_FLAG = re.compile(r"(?:--|—)zoom(?:\s+(\S+))?", re.IGNORECASE)


def split_custom_zoom(text: str) -> tuple[str, Recipe]:
    """A Custom Zoom form's text: the prompt without ``--zoom N``, and the zoom recipe of N.

    Raises:
        ValueError: no ``--zoom``, more than one, or a factor that is not a number from 1.1 to 2.
    """
    found = list(_ZOOM_FLAG.finditer(text))
    if len(found) != 1:
        raise ValueError("Custom Zoom needs one `--zoom` with a factor from 1.1 to 2 (e.g. `--zoom 1.8`)")
    value = found[0].group(1)
    try:
        factor = float(value) if value is not None and len(value) <= 10 else math.nan
    except ValueError:
        factor = math.nan
    if math.isnan(factor):
        raise ValueError("`--zoom` needs a factor from 1.1 to 2 (e.g. `--zoom 1.8`)")
    chosen = custom_zoom_recipe(factor)
    return (text[: found[0].start()] + text[found[0].end():]).strip(), chosen
