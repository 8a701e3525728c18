"""/edit: a job kind that repaints a member's picture where their mask is white.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 13:50:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("ALTER TYPE job_kind ADD VALUE IF NOT EXISTS 'edit'")


def downgrade() -> None:
    """Downgrade schema (an 'edit' job kind value stays: Postgres cannot drop an enum value)."""
