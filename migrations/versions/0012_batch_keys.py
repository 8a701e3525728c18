"""Cross-job batching: each job's batch key, and an index to find a job's companions.

Jobs of one model and lane with the same key may render in one pipeline call
(:func:`core.batching.batch_key`); rows written before this revision have none and render
alone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 22:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("jobs", sa.Column("batch_key", sa.Text(), nullable=True))
    op.create_index(
        "ix_jobs_batch_key",
        "jobs",
        ["model", "lane", "batch_key", "queued_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued' AND batch_key IS NOT NULL"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_jobs_batch_key", table_name="jobs", postgresql_where=sa.text("status = 'queued' AND batch_key IS NOT NULL"))
    op.drop_column("jobs", "batch_key")
