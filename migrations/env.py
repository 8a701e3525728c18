"""Alembic environment (async template).

Three ways in:

* :mod:`db.migrate` hands over an open connection in ``config.attributes["connection"]``
  (so migrations can run from inside a running event loop);
* :mod:`db.migrate` hands over a URL in ``config.attributes["database_url"]``;
* the plain ``alembic -c migrations/alembic.ini`` command reads ``DATABASE_URL``.

Every run takes a Postgres advisory lock first, so several processes that start at once
(bot shards, workers on the embedded database) migrate one after the other instead of
racing to create the same tables.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import Base

# An arbitrary constant shared by every Imaginarium process: the key of the migration lock.
MIGRATION_LOCK_KEY = 0x1D6A_0001

config = context.config
target_metadata = Base.metadata

# Programmatic callers keep their own logging; only the alembic command line configures it.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set: the migrations need a database to run on")
    # Accept the plain postgres:// spellings an operator may paste; the async env needs asyncpg.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url.removeprefix(prefix)
    return str(url)


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on ``connection`` under the migration lock."""
    context.configure(connection=connection, target_metadata=target_metadata, compare_server_default=True)
    with context.begin_transaction():
        # Transaction-scoped: released when the migration transaction ends, even on error.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open a connection from the URL and run the migrations on it."""
    engine = create_async_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations on a live database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
