"""Gallery search: keyset order for "recent", a vocabulary for typos, embeddings for meaning.

* ``ix_images_gallery_recent`` (``created_at, id`` of published images) serves the newest
  first order and its keyset pages (``(created_at, id) < (...)``); it replaces the index on
  ``created_at`` alone.
* ``prompt_words``: every word of a published prompt, once (kept by a trigger on images,
  existing ones read here with ``ts_stat``). A misspelt search looks its words up here
  through a trigram index (a few thousand short rows, not a million prompts) and searches
  again with the nearest ones. The trigram index exists only where pg_trgm does.
* ``prompt_embeddings``: one sentence embedding per done job's prompt (``db.embeddings``),
  in half precision (``halfvec``: half the memory of ``vector`` for the table and its
  index, rankings the same to three decimals), with an HNSW index for cosine distance. Only where the ``vector`` extension (pgvector) can
  be created: the embedded Postgres has it; a server without it keeps full-text search (the
  processes say so once at start, see ``db.repositories.search``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 16:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Words in a fixed order: two transactions adding overlapping new words never wait on each
# other in a circle.
_WORDS = """
    CREATE OR REPLACE FUNCTION prompt_words_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO prompt_words (word)
        SELECT DISTINCT w FROM jobs j, unnest(tsvector_to_array(to_tsvector('simple'::regconfig, j.prompt))) AS w
        WHERE j.id = NEW.job_id AND length(w) BETWEEN 3 AND 40 AND w ~ '^[[:alpha:]]'
        ORDER BY w
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END
    $$
"""

_TRIGRAM = """
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
            EXECUTE 'CREATE INDEX IF NOT EXISTS ix_prompt_words_trgm ON prompt_words USING gist (word gist_trgm_ops)';
        END IF;
    END
    $$
"""

# As with pg_trgm in 0001: a server without pgvector gets a notice, not a failed migration.
_VECTORS = """
    DO $$
    BEGIN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'pgvector is not available (%); gallery search stays full-text', SQLERRM;
        END;
        IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
            EXECUTE 'CREATE TABLE IF NOT EXISTS prompt_embeddings ('
                'job_id uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE, '
                'embedding halfvec(384) NOT NULL)';
            EXECUTE 'CREATE INDEX IF NOT EXISTS ix_prompt_embeddings_hnsw ON prompt_embeddings '
                'USING hnsw (embedding halfvec_cosine_ops)';
        END IF;
    END
    $$
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index("ix_images_public_created_at", table_name="images", postgresql_where=sa.text("public"))
    op.create_index(
        "ix_images_gallery_recent", "images", ["created_at", "id"], unique=False,
        postgresql_where=sa.text("public"),
    )
    op.create_table("prompt_words", sa.Column("word", sa.Text(), nullable=False), sa.PrimaryKeyConstraint("word"))
    op.execute(
        "INSERT INTO prompt_words (word) SELECT word FROM ts_stat("
        "'SELECT to_tsvector(''simple''::regconfig, j.prompt) FROM jobs j "
        "WHERE EXISTS (SELECT 1 FROM images i WHERE i.job_id = j.id AND i.public)') "
        "WHERE length(word) BETWEEN 3 AND 40 AND word ~ '^[[:alpha:]]' ON CONFLICT DO NOTHING"
    )
    op.execute(_WORDS)
    op.execute(
        "CREATE TRIGGER images_prompt_words AFTER INSERT OR UPDATE OF public ON images "
        "FOR EACH ROW WHEN (NEW.public) EXECUTE FUNCTION prompt_words_add()"
    )
    op.execute(_TRIGRAM)
    op.execute(_VECTORS)


def downgrade() -> None:
    """Downgrade schema (the vector extension stays, as pg_trgm does: it holds no data of ours)."""
    op.execute("DROP TABLE IF EXISTS prompt_embeddings")
    op.execute("DROP TRIGGER IF EXISTS images_prompt_words ON images")
    op.execute("DROP FUNCTION IF EXISTS prompt_words_add()")
    op.drop_table("prompt_words")
    op.drop_index("ix_images_gallery_recent", table_name="images", postgresql_where=sa.text("public"))
    op.create_index(
        "ix_images_public_created_at", "images", ["created_at"], unique=False,
        postgresql_where=sa.text("public"),
    )
