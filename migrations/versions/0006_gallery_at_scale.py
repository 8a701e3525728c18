"""The gallery at a million images: like counts kept on the image, an index for "top".

``images.likes`` is kept by a trigger on ``gallery_likes`` (one more on a like, one less on
an unlike), so a gallery page no longer aggregates every like there is; existing likes are
counted once here. ``ix_images_gallery_top`` serves the most-liked order of published images.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 14:45:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNT = """
    CREATE OR REPLACE FUNCTION gallery_likes_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE images SET likes = likes + 1 WHERE id = NEW.image_id;
            RETURN NEW;
        END IF;
        UPDATE images SET likes = likes - 1 WHERE id = OLD.image_id;
        RETURN OLD;
    END
    $$
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column("images", sa.Column("likes", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.execute(
        "UPDATE images SET likes = counted.n FROM "
        "(SELECT image_id, count(*) AS n FROM gallery_likes GROUP BY image_id) AS counted "
        "WHERE counted.image_id = images.id"
    )
    op.execute(_COUNT)
    op.execute(
        "CREATE TRIGGER gallery_likes_count AFTER INSERT OR DELETE ON gallery_likes "
        "FOR EACH ROW EXECUTE FUNCTION gallery_likes_count()"
    )
    op.create_index(
        "ix_images_gallery_top", "images", ["likes", "created_at", "id"], unique=False,
        postgresql_where=sa.text("public"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_images_gallery_top", table_name="images", postgresql_where=sa.text("public"))
    op.execute("DROP TRIGGER IF EXISTS gallery_likes_count ON gallery_likes")
    op.execute("DROP FUNCTION IF EXISTS gallery_likes_count()")
    op.drop_column("images", "likes")
