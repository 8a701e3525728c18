"""Numbers from URLs, as the database can take them."""

from __future__ import annotations

from typing import Any

MAX_ID = 2**63 - 1
"""The largest ``bigint``: an id beyond it names nothing (and Postgres would refuse it)."""


def positive_id(value: Any) -> int | None:
    """``value`` as an id (1 to :data:`MAX_ID`); None for anything else."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None
