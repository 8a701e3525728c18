"""Vary (Region) with a drawn mask: the masks members paint in the web gallery's editor, and
the requests the editor leaves for the bot to queue (the bot owns every submission).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 17:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "masks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("png", postgresql.BYTEA(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_masks_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_masks")),
    )
    op.create_table(
        "web_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("link_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("source_job_id", sa.UUID(), nullable=False),
        sa.Column("image_index", sa.SmallInteger(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("mask_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'queued', 'refused')", name=op.f("ck_web_requests_status_known")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_requests_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_job_id"], ["jobs.id"], name=op.f("fk_web_requests_source_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["mask_id"], ["masks.id"], name=op.f("fk_web_requests_mask_id_masks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_requests")),
        sa.UniqueConstraint("link_id", name=op.f("uq_web_requests_link_id")),
    )
    op.create_index(
        "ix_web_requests_pending", "web_requests", ["created_at"], unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_web_requests_pending", table_name="web_requests", postgresql_where=sa.text("status = 'pending'"))
    op.drop_table("web_requests")
    op.drop_table("masks")
