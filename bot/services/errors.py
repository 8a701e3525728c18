"""The one exception the services raise for a request they turn down."""

from __future__ import annotations

import enum
from typing import Any


class RefusalReason(enum.StrEnum):
    """Why a request was turned down (for logs, metrics and tests; users read the message)."""

    PROMPT = "prompt"
    """The prompt or its flags do not parse."""
    MODERATION = "moderation"
    """The prompt breaks the built-in filter or the server's banned words."""
    BANNED_USER = "banned_user"
    """The user is banned from making images."""
    CAPS = "caps"
    """The user already has as many queued or running jobs as allowed."""
    CREDITS = "credits"
    """The balance does not cover the cost."""
    MODEL = "model"
    """The model does not exist or is not allowed on this server."""
    LANE = "lane"
    """The relax lane is not allowed on this server."""
    INPUT = "input"
    """A bad attachment or option."""
    NOT_FOUND = "not_found"
    """The job or image no longer exists, or is not the user's."""
    NOT_OWNER = "not_owner"
    """Only the owner of the job may do this."""
    STATE = "state"
    """The job is not in a state that allows it (e.g. cancelling a running job)."""


class Refused(Exception):
    """A request turned down before anything was charged; ``message`` is shown to the user."""

    def __init__(self, message: str, *, reason: RefusalReason, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.detail = detail
        """What an operator's record of the refusal keeps (moderation: prompt, rule, reason)."""
