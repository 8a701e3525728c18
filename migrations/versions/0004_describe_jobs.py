"""/describe: a job kind whose result is prompts read from an image, not images.

``job_kind`` gains ``describe``; ``jobs.prompts`` holds a done describe job's prompts (in
the project's grammar, best first; NULL for every other job).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 13:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("ALTER TYPE job_kind ADD VALUE IF NOT EXISTS 'describe'")
    op.add_column("jobs", sa.Column("prompts", postgresql.ARRAY(sa.Text()), nullable=True))


def downgrade() -> None:
    """Downgrade schema (a 'describe' job kind value stays: Postgres cannot drop an enum value)."""
    op.drop_column("jobs", "prompts")
