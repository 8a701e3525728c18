"""LoRAs members train with /train: the request and its pictures, the trained file, who may use it.

A trained LoRA's name and trigger word are unique in its server (among those not failed);
a trigger on ``jobs`` marks the LoRA failed when its training job fails or is cancelled,
whichever path ends it (the worker, the reconciler, a cancel), so the name and trigger are
free again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 20:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FAIL_LORA = (
    """
CREATE FUNCTION trained_lora_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE trained_loras SET status = 'failed' WHERE job_id = NEW.id AND status = 'training';
    RETURN NEW;
END $$
""",
    """
CREATE TRIGGER trained_lora_job_ended AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.kind::text = 'train' AND NEW.status::text IN ('failed', 'cancelled'))
    EXECUTE FUNCTION trained_lora_job_ended()
""",
)


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("ALTER TYPE job_kind ADD VALUE IF NOT EXISTS 'train'")
    op.create_table(
        "trained_loras",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("request", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'training'"), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("shared", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('training', 'ready', 'failed')", name=op.f("ck_trained_loras_status_known")),
        sa.CheckConstraint("status <> 'ready' OR (storage_key IS NOT NULL AND sha256 IS NOT NULL)",
                           name=op.f("ck_trained_loras_ready_has_file")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_trained_loras_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"], name=op.f("fk_trained_loras_guild_id_guilds"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_trained_loras_job_id_jobs"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trained_loras")),
        sa.UniqueConstraint("job_id", name=op.f("uq_trained_loras_job_id")),
    )
    op.create_index(
        "uq_trained_loras_guild_name", "trained_loras", [sa.text("coalesce(guild_id, 0)"), sa.text("lower(name)")],
        unique=True, postgresql_where=sa.text("status <> 'failed'"),
    )
    op.create_index(
        "uq_trained_loras_guild_trigger", "trained_loras",
        [sa.text("coalesce(guild_id, 0)"), sa.text("lower(trigger)")],
        unique=True, postgresql_where=sa.text("status <> 'failed'"),
    )
    op.create_index("ix_trained_loras_user_id", "trained_loras", ["user_id"], unique=False)
    op.create_table(
        "training_pictures",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("lora_id", sa.BigInteger(), nullable=False),
        sa.Column("index", sa.SmallInteger(), nullable=False),
        sa.Column("data", postgresql.BYTEA(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("caption", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.ForeignKeyConstraint(["lora_id"], ["trained_loras.id"], name=op.f("fk_training_pictures_lora_id_trained_loras"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_pictures")),
        sa.UniqueConstraint("lora_id", "index", name=op.f("uq_training_pictures_lora_id_index")),
    )
    for statement in _FAIL_LORA:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema (the 'train' job kind value stays: Postgres cannot drop an enum value)."""
    op.execute("DROP TRIGGER IF EXISTS trained_lora_job_ended ON jobs")
    op.execute("DROP FUNCTION IF EXISTS trained_lora_job_ended()")
    op.drop_table("training_pictures")
    op.drop_index("ix_trained_loras_user_id", table_name="trained_loras")
    op.drop_index("uq_trained_loras_guild_trigger", table_name="trained_loras")
    op.drop_index("uq_trained_loras_guild_name", table_name="trained_loras")
    op.drop_table("trained_loras")
