"""Per-server bans and stored gallery queries.

``guild_bans``: a server's admins ban a member from making images in that server only
(``users.banned`` stays the operator's ban, everywhere). ``gallery_queries``: the words of a
gallery search (or a model filter) get an id, so the ◀ ▶ buttons of a result page carry
ids only and keep working after the bot restarts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('guild_bans',
    sa.Column('guild_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('banned_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['guild_id'], ['guilds.id'], name=op.f('fk_guild_bans_guild_id_guilds'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_guild_bans_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('guild_id', 'user_id', name=op.f('pk_guild_bans'))
    )
    op.create_index(op.f('ix_guild_bans_user_id'), 'guild_bans', ['user_id'], unique=False)
    op.create_table('gallery_queries',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('mode', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gallery_queries')),
    sa.UniqueConstraint('mode', 'text', name=op.f('uq_gallery_queries_mode_text'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('gallery_queries')
    op.drop_index(op.f('ix_guild_bans_user_id'), table_name='guild_bans')
    op.drop_table('guild_bans')
