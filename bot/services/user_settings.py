"""Per-user defaults set with ``/settings`` and applied to every new job.

They live in ``users.settings`` (a JSON object). A flag written in the prompt always wins
over the user's default: ``--ar 1:1`` in a prompt beats a default of 16:9.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import flags
from core.sizes import size_for_aspect
from core.spec import JobSpec, Lane
from db.repositories import update_user_settings, upsert_user

ASPECT_CHOICES = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "21:9")
STYLIZE_CHOICES = (0, 50, 100, 250, 500, 750, 1000)



@dataclass(frozen=True, slots=True)
class UserSettings:
    """A user's defaults; None means "the server's default"."""

    model: str | None = None
    aspect_ratio: str | None = None
    stylize: int | None = None
    lane: Lane | None = None
    remix: bool = False
    """Buttons that make variations open a form to edit the prompt first."""
    private: bool = False
    """New jobs stay out of the public gallery."""

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> UserSettings:
        """Read stored settings; unknown or malformed values fall back to the defaults."""
        data = data or {}
        lane = data.get("lane")
        aspect = data.get("aspect_ratio")
        stylize = data.get("stylize")
        model = data.get("model")
        return cls(
            model=model if isinstance(model, str) and model else None,
            aspect_ratio=aspect if aspect in ASPECT_CHOICES else None,
            stylize=stylize if isinstance(stylize, int) and 0 <= stylize <= 1000 else None,
            lane=Lane(lane) if lane in {m.value for m in Lane} else None,
            remix=bool(data.get("remix", False)),
            private=bool(data.get("private", False)),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in ``users.settings``."""
        data = dataclasses.asdict(self)
        data["lane"] = self.lane.value if self.lane else None
        return data


def explicit_flags(text: str) -> set[str]:
    """The flags written in ``text``, by canonical name (:func:`core.flags.written`); the
    defaultable ones (``ar``, ``stylize``, ``model``) are kept over the user's defaults."""
    return flags.written(text)


def apply_defaults(
    spec: JobSpec, settings: UserSettings, *, written: set[str], pixel_budget: int, size_step: int
) -> JobSpec:
    """Fill in what the prompt left out from the user's defaults.

    Args:
        written: the flags the user wrote (see :func:`explicit_flags`); those are kept.
        pixel_budget, size_step: the chosen model's, to size a default aspect ratio.
    """
    changes: dict[str, Any] = {}
    if settings.model and "model" not in written and spec.model is None:
        changes["model"] = settings.model
    if settings.stylize is not None and "stylize" not in written:
        changes["stylize"] = settings.stylize
    if settings.aspect_ratio and "ar" not in written:
        w, h = (int(x) for x in settings.aspect_ratio.split(":"))
        width, height = size_for_aspect(w, h, pixel_budget=pixel_budget, step=size_step)
        changes.update(aspect_ratio=(w, h), width=width, height=height)
    if settings.lane is not None and spec.lane is None:
        changes["lane"] = settings.lane
    return dataclasses.replace(spec, **changes) if changes else spec


async def get_user_settings(*, session: AsyncSession, discord_user_id: int) -> UserSettings:
    """The user's settings (the defaults for a user the bot has not seen)."""
    user = await upsert_user(session=session, discord_id=discord_user_id)
    return UserSettings.from_json(user.settings)


async def change_user_settings(
    *, session: AsyncSession, discord_user_id: int, **changes: Any
) -> UserSettings:
    """Change some of the user's settings and return all of them.

    Raises:
        ValueError: for an unknown setting or a value outside its choices.
    """
    known = {f.name for f in dataclasses.fields(UserSettings)}
    unknown = set(changes) - known
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    if changes.get("aspect_ratio") not in (None, *ASPECT_CHOICES):
        raise ValueError(f"aspect ratio must be one of {', '.join(ASPECT_CHOICES)}")
    if changes.get("stylize") not in (None, *STYLIZE_CHOICES):
        raise ValueError(f"stylize must be one of {', '.join(map(str, STYLIZE_CHOICES))}")
    if isinstance(changes.get("lane"), Lane):
        changes["lane"] = changes["lane"].value
    user = await upsert_user(session=session, discord_id=discord_user_id)
    user = await update_user_settings(session=session, user_id=user.id, changes=changes)
    return UserSettings.from_json(user.settings)
