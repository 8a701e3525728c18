"""The actions behind buttons on results, and the custom ids that carry them.

A custom id is ``img:v1:<action>:<job uuid>:<index>``: ids only, so every button on every
old message still works after a restart (the state is re-read from the database), and
``v1`` lets a later format coexist with buttons already posted.
"""

from __future__ import annotations

import enum
import re
import uuid

from core.kinds import Button, Message, Recipe, button_recipe, buttons_on, menu_recipes

CUSTOM_ID_PREFIX = "img:v1"


class Action(enum.StrEnum):
    """What a button that queues no recipe of its own does. The value is the code in the custom id.

    The buttons that queue a job (V1-V4, upscale, vary, zoom, pan) are the recipes' buttons
    in :mod:`core.kinds`; their codes share this namespace.
    """

    PICK = "u"
    """U1-U4: show one image of a grid on its own (free)."""
    REROLL = "rr"
    """🔄: the recipe of the job it is under again, with a new seed."""
    VARY_REGION = "vr"
    """Opens a choice of regions to repaint (Discord has no drawing tool)."""
    CUSTOM_ZOOM = "zc"
    """Opens a form with the prompt and ``--zoom 2``: any factor from 1.1 to 2, a new prompt."""
    FAVORITE = "fav"
    PUBLISH = "pub"
    """Publish to the server gallery, or unpublish (owner only)."""
    DELETE = "del"
    """🗑: delete the message (owner only)."""
    CANCEL = "cancel"
    """Cancel a queued job (owner only); index 0 on the job's message, 1 in /queue."""


REMIX_ACTIONS = frozenset({Action.REROLL})
"""With remix mode on, these open a form to edit the prompt first (as do remixable recipes)."""

OWNER_ONLY = frozenset({Action.PUBLISH, Action.DELETE, Action.CANCEL})
"""Everyone else gets an ephemeral explanation. Every other button works for anyone: a
click on someone else's result makes a copy of the action on the clicker's own credits."""

REGIONS: dict[str, str] = {r.variant: r.menu_label for r in menu_recipes() if r.variant and r.menu_label}
"""The Vary (Region) menu: region recipes by variant, with their labels."""

ButtonAction = Action | tuple[Recipe, Button]
"""What a button's code stands for: a bot action, or a recipe and the button that queues it."""


def button_action(code: str) -> ButtonAction:
    """The meaning of a custom id's action code.

    Raises:
        ValueError: an unknown code.
    """
    found = button_recipe(code)
    return found if found is not None else Action(code)


_CODES = {a.value for a in Action} | {b.code for _, b in (buttons_on(Message.GRID) + buttons_on(Message.IMAGE))}
JOB_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BUTTON_TEMPLATE = (
    rf"img:v1:(?P<action>{'|'.join(sorted((re.escape(c) for c in _CODES), key=len, reverse=True))})"
    rf":(?P<job>{JOB_ID}):(?P<index>[0-9])"
)
REGION_TEMPLATE = rf"img:v1:rgn:(?P<job>{JOB_ID}):(?P<index>[0-9])"


def custom_id(action: str, job_id: uuid.UUID | str, index: int = 0) -> str:
    """The custom id of a button (or the region select, action ``rgn``)."""
    return f"{CUSTOM_ID_PREFIX}:{action}:{job_id}:{index}"
