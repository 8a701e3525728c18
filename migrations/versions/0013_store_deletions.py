"""Files to remove from the image store: a deleted trained LoRA's file.

Deleting a ``trained_loras`` row (``/lora delete``, or its member or server deleted) queues
its file here when no other row names the same key (a trigger, whatever deleted it); the
workers' reconciler removes the file from the store and from their local copies, then marks
the row purged (:mod:`gpu_worker.purging`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 11:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE_FILE = (
    """
CREATE FUNCTION trained_lora_file_unused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.storage_key IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM trained_loras WHERE storage_key = OLD.storage_key) THEN
        INSERT INTO store_deletions (storage_key, sha256) VALUES (OLD.storage_key, OLD.sha256)
        ON CONFLICT (storage_key) DO UPDATE SET requested_at = now(), purged_at = NULL;
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER trained_lora_file_unused AFTER DELETE ON trained_loras
    FOR EACH ROW EXECUTE FUNCTION trained_lora_file_unused()
""",
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "store_deletions",
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("storage_key", name=op.f("pk_store_deletions")),
    )
    op.create_index(
        "ix_store_deletions_pending", "store_deletions", ["requested_at"], unique=False,
        postgresql_where=sa.text("purged_at IS NULL"),
    )
    for statement in _QUEUE_FILE:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP TRIGGER IF EXISTS trained_lora_file_unused ON trained_loras")
    op.execute("DROP FUNCTION IF EXISTS trained_lora_file_unused()")
    op.drop_index("ix_store_deletions_pending", table_name="store_deletions",
                  postgresql_where=sa.text("purged_at IS NULL"))
    op.drop_table("store_deletions")
