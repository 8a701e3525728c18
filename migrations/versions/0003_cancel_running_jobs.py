"""Cancelling a running job: it stops at its next step and the unrendered share is refunded.

``jobs.cancel_requested_at``: when the owner asked a running job to stop (the worker checks
at every step, and a redelivered task finds it at claim). ``jobs.refunded``: the credits a
job cancelled while running gave back. The status trigger allows running -> cancelled. The
ledger gains ``refund``: the unrendered share of a captured hold (at most once per job, by
the ledger's unique index on job and kind).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:20:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUS_CHECK = """
    CREATE OR REPLACE FUNCTION jobs_check_status() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW.status <> 'queued' THEN
                RAISE EXCEPTION 'a job starts queued, not %', NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
        ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT (
            (OLD.status = 'queued' AND NEW.status IN ('running', 'cancelled', 'failed'))
            OR (OLD.status = 'running' AND NEW.status IN ('done', 'failed', 'queued'{running_cancel}))
        ) THEN
            RAISE EXCEPTION 'illegal job status transition % -> %', OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('jobs', sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('refunded', sa.Integer(), nullable=True))
    op.execute(_STATUS_CHECK.format(running_cancel=", 'cancelled'"))
    op.execute("ALTER TYPE ledger_kind ADD VALUE IF NOT EXISTS 'refund'")


def downgrade() -> None:
    """Downgrade schema (a 'refund' ledger value stays: Postgres cannot drop an enum value)."""
    op.execute(_STATUS_CHECK.format(running_cancel=""))
    op.drop_column('jobs', 'refunded')
    op.drop_column('jobs', 'cancel_requested_at')
