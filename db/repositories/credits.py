"""Credit movements: each is one SQL statement that writes the ledger row and the balance.

A job's credits go hold -> capture (done) or hold -> release (failed, cancelled), or
hold -> capture -> refund of the unrendered share (cancelled while running). The
database makes each step happen at most once per job (partial unique indexes on the
ledger), so a redelivered task or a retried refund cannot charge or refund twice: the
second attempt inserts nothing and the functions return False.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_GRANT = text(
    """
    WITH granted AS (
        INSERT INTO credit_ledger (user_id, kind, amount, idempotency_key)
        VALUES (:user_id, 'grant', :amount, :key)
        ON CONFLICT DO NOTHING
        RETURNING user_id, amount
    )
    UPDATE users SET balance = users.balance + granted.amount, updated_at = now()
    FROM granted
    WHERE users.id = granted.user_id
    RETURNING users.balance
    """
)

# The balance check and the debit are one UPDATE: under concurrent holds Postgres re-checks
# "balance >= amount" against the latest row version after waiting for the row lock, so
# the balance can never go negative and no hold is lost.
_HOLD = text(
    """
    WITH debited AS (
        UPDATE users SET balance = balance - :amount, updated_at = now()
        WHERE id = :user_id AND balance >= :amount
        RETURNING id
    )
    INSERT INTO credit_ledger (user_id, kind, amount, job_id)
    SELECT id, 'hold'::ledger_kind, CAST(:amount AS bigint), CAST(:job_id AS uuid) FROM debited
    RETURNING id
    """
)

_CAPTURE = text(
    """
    INSERT INTO credit_ledger (user_id, kind, amount, job_id)
    SELECT user_id, 'capture'::ledger_kind, amount, job_id FROM credit_ledger
    WHERE job_id = :job_id AND kind = 'hold'
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)

_REFUND = text(
    """
    WITH refunded AS (
        INSERT INTO credit_ledger (user_id, kind, amount, job_id)
        SELECT user_id, 'refund'::ledger_kind, LEAST(CAST(:amount AS bigint), amount), job_id
        FROM credit_ledger
        WHERE job_id = :job_id AND kind = 'capture'
        ON CONFLICT DO NOTHING
        RETURNING user_id, amount
    )
    UPDATE users SET balance = users.balance + refunded.amount, updated_at = now()
    FROM refunded
    WHERE users.id = refunded.user_id
    RETURNING users.id
    """
)

_RELEASE = text(
    """
    WITH released AS (
        INSERT INTO credit_ledger (user_id, kind, amount, job_id)
        SELECT user_id, 'release'::ledger_kind, amount, job_id FROM credit_ledger
        WHERE job_id = :job_id AND kind = 'hold'
        ON CONFLICT DO NOTHING
        RETURNING user_id, amount
    )
    UPDATE users SET balance = users.balance + released.amount, updated_at = now()
    FROM released
    WHERE users.id = released.user_id
    RETURNING users.id
    """
)


async def grant_credits(*, session: AsyncSession, user_id: int, amount: int, key: str | None = None) -> bool:
    """Add ``amount`` credits to a user's balance.

    Args:
        user_id: ``users.id`` (not the Discord id).
        amount: how many credits; must be positive.
        key: makes the grant happen once, e.g. ``f"daily:{guild_id}:{date}"``; a second
            grant with the same key changes nothing.

    Returns:
        True if credits were added, False if ``key`` was already used (or the user does not
        exist).
    """
    if amount <= 0:
        raise ValueError(f"a grant must be positive, got {amount}")
    result = await session.execute(_GRANT, {"user_id": user_id, "amount": amount, "key": key})
    return result.first() is not None


async def hold_credits(*, session: AsyncSession, user_id: int, job_id: uuid.UUID, amount: int) -> bool:
    """Reserve ``amount`` credits for a job, in one atomic statement.

    The job row must exist (the ledger references it); :func:`db.repositories.create_job`
    calls this for you.

    Returns:
        True if the balance covered the amount and was debited, False (and nothing written)
        otherwise.
    """
    if amount <= 0:
        raise ValueError(f"a hold must be positive, got {amount}")
    result = await session.execute(_HOLD, {"user_id": user_id, "amount": amount, "job_id": job_id})
    return result.first() is not None


async def capture_credits(*, session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Keep a job's hold for good (the job finished). The balance does not change.

    Returns:
        True if this call captured; False if the job had no hold (it was free) or its hold
        was already captured or released.
    """
    result = await session.execute(_CAPTURE, {"job_id": job_id})
    return result.first() is not None


async def release_credits(*, session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Give a job's hold back to its user (the job failed or was cancelled).

    Idempotent per job: a hold is refunded at most once and never after it was captured.

    Returns:
        True if this call refunded; False if there was nothing (left) to refund.
    """
    result = await session.execute(_RELEASE, {"job_id": job_id})
    return result.first() is not None


async def refund_credits(*, session: AsyncSession, job_id: uuid.UUID, amount: int) -> bool:
    """Give back ``amount`` (at most the captured hold) of a captured job's credits, once per job.

    Returns:
        True if this call refunded; False if the job has no captured hold or was refunded already.
    """
    if amount <= 0:
        raise ValueError(f"a refund must be positive, got {amount}")
    result = await session.execute(_REFUND, {"job_id": job_id, "amount": amount})
    return result.first() is not None
