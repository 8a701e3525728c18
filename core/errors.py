"""The error the prompt grammar raises (:mod:`core.prompt`, :mod:`core.flags`, :mod:`core.samplers`)."""

from __future__ import annotations


class PromptError(ValueError):
    """A prompt the parser refuses; ``str(err)`` is ``"<token>: <reason>"`` for the user.

    Attributes:
        token: the offending piece of the prompt as written (``"--ar 99:1"``), or ``""``
            when the problem is the prompt as a whole (empty, too long).
        reason: what is wrong and what is allowed.
    """

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        self.reason = reason
        super().__init__(f"{token}: {reason}" if token else reason)

    def __reduce__(self) -> tuple[type[PromptError], tuple[str, str]]:
        # The default pickling passes only the message back to __init__; Celery pickles errors.
        return (type(self), (self.token, self.reason))
