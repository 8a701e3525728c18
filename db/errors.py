"""Errors the repositories raise for callers to turn into a message to the user."""

from __future__ import annotations

import uuid


class InsufficientCredits(Exception):
    """The user's balance does not cover a job's cost; nothing was charged or written."""

    def __init__(self, *, user_id: int, needed: int, balance: int) -> None:
        super().__init__(f"not enough credits: the job costs {needed}, the balance is {balance}")
        self.user_id = user_id
        self.needed = needed
        self.balance = balance


class JobStateError(Exception):
    """A job is not in a state that allows the requested change (e.g. finishing a cancelled job)."""

    def __init__(self, job_id: uuid.UUID, status: str | None, action: str) -> None:
        where = "does not exist" if status is None else f"is {status}"
        super().__init__(f"cannot {action} job {job_id}: it {where}")
        self.job_id = job_id
        self.status = status
        self.action = action
