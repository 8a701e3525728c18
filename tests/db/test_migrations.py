"""The migrations build exactly the models' schema, and go down and up again cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db import migrate
from db.models import Base
from tests.conftest import create_database, database_url_for, run_async


@pytest.fixture
def empty_db_url() -> Iterator[str]:
    """A new database with no schema at all."""
    name = f"imaginarium_test_{os.getpid()}_empty"
    run_async(create_database(name))
    url = database_url_for(name)
    yield url
    run_async(migrate.drop_database(url))


async def _schema(url: str) -> dict[str, Any]:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            tables = set(
                await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            )
            types = set(
                await conn.scalars(
                    text(
                        "SELECT typname FROM pg_type WHERE typtype = 'e' AND typnamespace = 'public'::regnamespace"
                    )
                )
            )
            functions = set(
                await conn.scalars(
                    text(
                        "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
                        "AND prorettype = 'trigger'::regtype"
                    )
                )
            )
            triggers = set(await conn.scalars(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
            return {"tables": tables, "enums": types, "functions": functions, "triggers": triggers}
    finally:
        await engine.dispose()


_OPTIONAL = {"ix_jobs_prompt_trgm", "ix_prompt_words_trgm", "prompt_embeddings", "ix_prompt_embeddings_hnsw"}


async def _model_diff(url: str) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        # The trigram indexes and the embeddings table are created only where pg_trgm and
        # pgvector exist, so they are not in the models.
        def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
            return name not in _OPTIONAL

        context = MigrationContext.configure(
            conn, opts={"compare_server_default": True, "compare_type": True, "include_object": include}
        )
        return list(compare_metadata(context, Base.metadata))

    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_to_head_then_down_to_base_and_up_again(empty_db_url: str) -> None:
    assert await migrate.current_revision(empty_db_url) is None

    await migrate.upgrade_async(empty_db_url)
    assert await migrate.current_revision(empty_db_url) == migrate.head_revision()
    schema = await _schema(empty_db_url)
    assert set(Base.metadata.tables) <= schema["tables"]
    assert {"job_status", "job_kind", "lane", "ledger_kind", "nsfw_policy"} <= schema["enums"]
    assert {
        "credit_ledger_append_only",
        "credit_ledger_no_truncate",
        "jobs_status_transition",
        "jobs_notify_ended",
    } <= schema["triggers"]

    await migrate.downgrade_async(empty_db_url, "base")
    assert await migrate.current_revision(empty_db_url) is None
    # Nothing of ours is left: tables, enum types, trigger functions.
    assert await _schema(empty_db_url) == {
        "tables": {"alembic_version"},
        "enums": set(),
        "functions": set(),
        "triggers": set(),
    }

    await migrate.upgrade_async(empty_db_url)
    assert await migrate.current_revision(empty_db_url) == migrate.head_revision()


async def test_the_migrated_schema_matches_the_models(db_url: str) -> None:
    assert await _model_diff(db_url) == []


async def test_upgrading_an_up_to_date_database_changes_nothing(db_url: str) -> None:
    await migrate.upgrade_async(db_url)
    assert await migrate.current_revision(db_url) == migrate.head_revision()


async def test_ensure_database_creates_a_missing_database_once() -> None:
    url = database_url_for(f"imaginarium_test_{os.getpid()}_ensure")
    try:
        assert await migrate.ensure_database(url)
        assert not await migrate.ensure_database(url)
    finally:
        await migrate.drop_database(url)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Run from outside the checkout, as an installed package would be: the migrations must
    # be found through the package, not the working directory.
    return subprocess.run(
        [sys.executable, "-m", "imaginarium", "migrate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=cwd,
        timeout=180,
    )


def test_imaginarium_migrate_upgrades_and_downgrades_through_the_cli(tmp_path: Path) -> None:
    url = database_url_for(f"imaginarium_test_{os.getpid()}_cli")
    # A data dir that must stay unused: an explicit DATABASE_URL starts no embedded server.
    env = {"DATABASE_URL": url, "IMAGINARIUM_DATA_DIR": str(tmp_path / "data")}
    try:
        # The database does not exist yet: migrate creates it.
        up = _cli(env=env, cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert f"at revision {migrate.head_revision()}" in up.stdout
        assert run_async(migrate.current_revision(url)) == migrate.head_revision()

        down = _cli("--downgrade", "base", env=env, cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert "base (empty)" in down.stdout
        assert run_async(migrate.current_revision(url)) is None

        again = _cli("--revision", "head", env=env, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert run_async(migrate.current_revision(url)) == migrate.head_revision()
        assert not (tmp_path / "data").exists()
    finally:
        run_async(migrate.drop_database(url))


def test_imaginarium_migrate_reports_a_bad_database_url(tmp_path: Path) -> None:
    bad = _cli(env={"DATABASE_URL": "mysql://nope"}, cwd=tmp_path)
    assert bad.returncode == 2
    assert "DATABASE_URL" in bad.stderr and "Traceback" not in bad.stderr
