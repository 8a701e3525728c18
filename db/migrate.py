"""Run the alembic migrations from code (the installed package carries them).

The alembic ``Config`` is built here from the ``alembic.ini`` shipped in the ``migrations``
package, with ``script_location`` pointing at that package's folder, so migrating needs
neither a checkout nor a working directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

import migrations


def _migrations_dir() -> Path:
    # Not migrations.__file__: an editable install made before the folder had an
    # __init__.py maps it as a namespace package, which has no __file__.
    for location in migrations.__path__:
        if (Path(location) / "env.py").is_file():
            return Path(location).resolve()
    raise RuntimeError(f"the migrations package has no env.py (searched {list(migrations.__path__)})")


MIGRATIONS_DIR = _migrations_dir()


def alembic_config(database_url: str | None = None) -> Config:
    """The alembic Config for our migrations; ``database_url`` is handed to ``env.py`` as is.

    The URL travels in ``config.attributes`` rather than ``sqlalchemy.url`` because the ini
    parser would treat a ``%`` in a password as interpolation.
    """
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["configure_logger"] = False
    if database_url is not None:
        cfg.attributes["database_url"] = database_url
    return cfg


def head_revision() -> str:
    """The newest revision id the package knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships at least one revision
        raise RuntimeError("no migrations found")
    return head


async def _run_on_connection(database_url: str, action: str, revision: str) -> None:
    engine = create_async_engine(database_url, poolclass=pool.NullPool)

    def run(connection: Connection) -> None:
        cfg = alembic_config(database_url)
        cfg.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """Upgrade the database at ``database_url`` to ``revision`` (safe to run from async code)."""
    await _run_on_connection(database_url, "upgrade", revision)


async def downgrade_async(database_url: str, revision: str = "base") -> None:
    """Downgrade the database at ``database_url`` to ``revision``."""
    await _run_on_connection(database_url, "downgrade", revision)


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking :func:`upgrade_async`; call it where no event loop is running."""
    asyncio.run(upgrade_async(database_url, revision))


def downgrade(database_url: str, revision: str = "base") -> None:
    """Blocking :func:`downgrade_async`; call it where no event loop is running."""
    asyncio.run(downgrade_async(database_url, revision))


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty (unmigrated) database."""
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def _asyncpg_dsn(database_url: str, database: str | None = None) -> tuple[str, dict[str, str]]:
    """A DSN asyncpg understands, plus query options (``host=/socket/dir``) passed apart."""
    url = make_url(database_url)
    if database is not None:
        url = url.set(database=database)
    query = {k: v if isinstance(v, str) else v[0] for k, v in url.query.items()}
    dsn = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return dsn, query


async def ensure_database(database_url: str, maintenance_db: str = "postgres") -> bool:
    """Create the database named in ``database_url`` if it does not exist yet.

    Returns True if this call created it. Two processes racing to create it are fine: the
    loser sees the winner's database.
    """
    dsn, query = _asyncpg_dsn(database_url)
    try:
        conn = await asyncpg.connect(dsn, **query)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    name = make_url(database_url).database
    if not name:
        raise ValueError(f"no database name in {make_url(database_url)!r}")
    dsn, query = _asyncpg_dsn(database_url, maintenance_db)
    conn = await asyncpg.connect(dsn, **query)
    try:
        await conn.execute(f'CREATE DATABASE "{_check_identifier(name)}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await conn.close()
    return True


async def drop_database(database_url: str, maintenance_db: str = "postgres") -> None:
    """Drop the database named in ``database_url`` (closing its connections); no error if absent."""
    name = make_url(database_url).database
    if not name:
        raise ValueError(f"no database name in {make_url(database_url)!r}")
    dsn, query = _asyncpg_dsn(database_url, maintenance_db)
    conn = await asyncpg.connect(dsn, **query)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_check_identifier(name)}" WITH (FORCE)')
    finally:
        await conn.close()


def _check_identifier(name: str) -> str:
    # Database names go into DDL, which takes no bind parameters: refuse anything that could
    # break out of the quoted identifier.
    if '"' in name or "\x00" in name:
        raise ValueError(f"unsafe database name: {name!r}")
    return name
