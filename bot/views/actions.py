"""The actions behind buttons on results, and the custom ids that carry them.

A custom id is ``img:v1:<action>:<job uuid>:<index>``: ids only, so every button on every
old message still works after a restart (the state is re-read from the database), and
``v1`` lets a later format coexist with buttons already posted.
"""

from __future__ import annotations

import enum
import re
import uuid

from core.spec import REGION_PRESETS, JobKind

CUSTOM_ID_PREFIX = "img:v1"


class Action(enum.StrEnum):
    """What a button does. The value is the short code in the custom id."""

    PICK = "u"
    """U1-U4: show one image of a grid on its own (free)."""
    VARY = "v"
    """V1-V4: four variations of one image of a grid."""
    REROLL = "rr"
    """🔄: the same prompt with a new seed."""
    UPSCALE_SUBTLE = "ups"
    UPSCALE_CREATIVE = "upc"
    VARY_SUBTLE = "vs"
    VARY_STRONG = "vst"
    VARY_REGION = "vr"
    """Opens a choice of regions to repaint (Discord has no drawing tool)."""
    ZOOM_2 = "z2"
    ZOOM_1_5 = "z15"
    PAN_LEFT = "pl"
    PAN_RIGHT = "pr"
    PAN_UP = "pu"
    PAN_DOWN = "pd"
    SQUARE = "sq"
    FAVORITE = "fav"
    PUBLISH = "pub"
    """Publish to the server gallery, or unpublish (owner only)."""
    DELETE = "del"
    """🗑: delete the message (owner only)."""
    CANCEL = "cancel"
    """Cancel a queued job (owner only); index 0 on the job's message, 1 in /queue."""


# Actions that queue a new job, with its kind and variant.
JOB_ACTIONS: dict[Action, tuple[JobKind, str | None]] = {
    Action.VARY: (JobKind.VARIATION, "strong"),
    Action.REROLL: (JobKind.REROLL, None),
    Action.UPSCALE_SUBTLE: (JobKind.UPSCALE, "subtle"),
    Action.UPSCALE_CREATIVE: (JobKind.UPSCALE, "creative"),
    Action.VARY_SUBTLE: (JobKind.VARIATION, "subtle"),
    Action.VARY_STRONG: (JobKind.VARIATION, "strong"),
    Action.ZOOM_2: (JobKind.ZOOM, "2"),
    Action.ZOOM_1_5: (JobKind.ZOOM, "1.5"),
    Action.SQUARE: (JobKind.ZOOM, "square"),
    Action.PAN_LEFT: (JobKind.PAN, "left"),
    Action.PAN_RIGHT: (JobKind.PAN, "right"),
    Action.PAN_UP: (JobKind.PAN, "up"),
    Action.PAN_DOWN: (JobKind.PAN, "down"),
}

REMIXABLE = frozenset({Action.VARY, Action.REROLL, Action.VARY_SUBTLE, Action.VARY_STRONG})
"""With remix mode on, these open a form to edit the prompt first."""

OWNER_ONLY = frozenset({Action.PUBLISH, Action.DELETE, Action.CANCEL})
"""Everyone else gets an ephemeral explanation. Every other button works for anyone: a
click on someone else's result makes a copy of the action on the clicker's own credits."""

_REGION_LABELS = {
    "left": "Left half",
    "right": "Right half",
    "top": "Top half",
    "bottom": "Bottom half",
    "center": "Centre",
}
REGIONS: dict[str, str] = {name: _REGION_LABELS[name] for name in REGION_PRESETS}
"""Region presets for Vary (Region), by the name a ``region`` job carries as its variant
(:data:`core.spec.REGION_PRESETS`, which the worker turns into a mask), with their labels."""

JOB_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BUTTON_TEMPLATE = (
    rf"img:v1:(?P<action>{'|'.join(sorted((re.escape(a.value) for a in Action), key=len, reverse=True))})"
    rf":(?P<job>{JOB_ID}):(?P<index>[0-9])"
)
REGION_TEMPLATE = rf"img:v1:rgn:(?P<job>{JOB_ID}):(?P<index>[0-9])"


def custom_id(action: Action | str, job_id: uuid.UUID | str, index: int = 0) -> str:
    """The custom id of a button (or the region select, action ``rgn``)."""
    return f"{CUSTOM_ID_PREFIX}:{action}:{job_id}:{index}"
