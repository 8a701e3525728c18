"""WebP thumbnails of images, made when they are stored (the web gallery's tiles).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 16:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("images", sa.Column("thumbnail_key", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("images", "thumbnail_key")
