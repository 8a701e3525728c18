"""Fair share: the jobs each member started lately, found by an index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 17:10:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_jobs_user_id_started_at", "jobs", ["user_id", "started_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_jobs_user_id_started_at", table_name="jobs")
