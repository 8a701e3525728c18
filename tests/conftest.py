"""Shared fixtures: a real Postgres database and a real Redis database for every test package.

Postgres (``TEST_DATABASE_URL``, default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``):

* ``db_url`` (session): a database of its own for this pytest process
  (``imaginarium_test_<pid>``), migrated to head, dropped at the end. Data committed to it
  stays until the end of the run: use unique ids, or ``fresh_db_url``.
* ``session`` (function): an ``AsyncSession`` inside an outer transaction that is rolled
  back after the test; the code under test may ``commit()`` freely (commits become
  savepoints). ``session_factory`` makes more sessions on that same connection (for code
  that takes a factory); they share one connection, so use them one at a time.
* ``fresh_db_url`` (function): an empty migrated database of its own, for tests whose
  code opens its own connections and commits (several processes, concurrency).

Redis (``TEST_REDIS_URL``, default ``redis://127.0.0.1:6379``):

* ``redis_url`` (function): ``redis://host:port/<n>`` where database ``n`` is claimed by
  this pytest process for the whole run (other runs pick other numbers), flushed before
  and after each test.

Nothing here skips: when Postgres or Redis cannot be reached the fixtures fail with a
message that says which URL to fix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import psutil
import pytest
import redis
from sqlalchemy import pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine

from db.migrate import drop_database, upgrade_async

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379"

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion in a thread of its own.

    Sync fixtures use this rather than ``asyncio.run`` in the main thread, which would
    replace the event loop that pytest-asyncio keeps for the tests.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool_:
        return pool_.submit(asyncio.run, coro).result()


def _base_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url


def database_url_for(name: str) -> str:
    """The URL of database ``name`` on the test Postgres server."""
    return make_url(_base_url()).set(database=name).render_as_string(hide_password=False)


async def create_database(name: str, template: str | None = None) -> None:
    """(Re)create database ``name`` on the test Postgres, optionally as a copy of ``template``."""
    import asyncpg

    base = make_url(_base_url())
    dsn = base.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    query = {k: v if isinstance(v, str) else v[0] for k, v in base.query.items()}
    try:
        conn = await asyncpg.connect(dsn, timeout=10, **query)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise RuntimeError(
            f"cannot reach the test Postgres at {base.render_as_string()} ({exc!r}); "
            "start it or point TEST_DATABASE_URL at one"
        ) from exc
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def db_template() -> Iterator[str]:
    """Name of a migrated database that others are copied from; never connect to it."""
    name = f"imaginarium_test_{os.getpid()}_template"
    run_async(create_database(name))
    url = database_url_for(name)
    run_async(upgrade_async(url))
    yield name
    run_async(drop_database(url))


@pytest.fixture(scope="session")
def db_url(db_template: str) -> Iterator[str]:
    """URL of this pytest process's migrated test database (dropped at the end)."""
    name = f"imaginarium_test_{os.getpid()}"
    run_async(create_database(name, template=db_template))
    url = database_url_for(name)
    yield url
    run_async(drop_database(url))


_fresh_counter = itertools.count(1)


@pytest.fixture
def fresh_db_url(db_template: str) -> Iterator[str]:
    """URL of a new migrated database for this test only (dropped after it)."""
    name = f"imaginarium_test_{os.getpid()}_{next(_fresh_counter)}"
    run_async(create_database(name, template=db_template))
    url = database_url_for(name)
    yield url
    run_async(drop_database(url))


@pytest.fixture
async def db_connection(db_url: str) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    # NullPool and one engine per test: asyncpg connections belong to the event loop that
    # opened them, and each test has its own loop.
    engine = create_async_engine(db_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            try:
                yield connection
            finally:
                if transaction.is_active:
                    await transaction.rollback()
    finally:
        await engine.dispose()


@pytest.fixture
def session_factory(db_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's outer transaction (their commits are savepoints)."""
    return async_sessionmaker(
        bind=db_connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def session(session_factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose work is rolled back after the test."""
    async with session_factory() as session_:
        yield session_


_CLAIM_PREFIX = "imaginarium:test-db-claim:"


def _claim_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_is_stale(owner: object) -> bool:
    # A claim left by a dead pytest process on this host may be taken over.
    if owner is None:
        return True
    text = owner.decode() if isinstance(owner, bytes) else str(owner)
    host, _, pid = text.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


@pytest.fixture(scope="session")
def _redis_test_db() -> Iterator[tuple[str, int]]:
    base = os.environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL).rstrip("/")
    client = redis.Redis.from_url(f"{base}/0", socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"cannot reach the test Redis at {base} ({exc!r}); start it or set TEST_REDIS_URL"
        ) from exc
    owner = _claim_owner()
    claimed = None
    for number in range(1, 16):
        key = f"{_CLAIM_PREFIX}{number}"
        if client.set(key, owner, nx=True, ex=12 * 3600):
            claimed = number
            break
        previous = client.get(key)
        if _claim_is_stale(previous) and client.set(key, owner, xx=True, ex=12 * 3600, get=True) == previous:
            claimed = number
            break
    if claimed is None:
        raise RuntimeError("Redis databases 1-15 are all claimed by other test runs; try again when one ends")
    try:
        yield base, claimed
    finally:
        redis.Redis.from_url(f"{base}/{claimed}").flushdb()
        if client.get(f"{_CLAIM_PREFIX}{claimed}") == owner.encode():
            client.delete(f"{_CLAIM_PREFIX}{claimed}")
        client.close()


@pytest.fixture
def redis_url(_redis_test_db: tuple[str, int]) -> Iterator[str]:
    """``redis://.../<n>``: a Redis database of this test run, empty at the start of the test."""
    base, number = _redis_test_db
    url = f"{base}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def vector_server() -> Iterator[Any]:
    """An embedded Postgres 18 (pgvector and pg_trgm included) for the tests of search by
    meaning: the system Postgres here has no pgvector."""
    import shutil
    import tempfile
    from pathlib import Path

    from db.embedded import EmbeddedPostgres

    # Not under pytest's tmp_path (mode 0700): the server may run as another user.
    folder = Path(tempfile.mkdtemp(prefix="imaginarium-vector-"))
    server = EmbeddedPostgres(folder / "postgres")
    server.acquire()
    try:
        yield server
    finally:
        server.release()
        shutil.rmtree(folder, ignore_errors=True)


def _migrated(server: Any, name: str) -> str:
    from db.migrate import ensure_database

    url = str(server.database_url(name))
    run_async(ensure_database(url))
    run_async(upgrade_async(url))
    return url


@pytest.fixture(scope="session")
def vector_db_url(vector_server: Any) -> str:
    """A migrated database on :func:`vector_server`, shared by the session's tests."""
    return _migrated(vector_server, "imaginarium_vector_test")


@pytest.fixture
def fresh_vector_db_url(vector_server: Any) -> str:
    """A new migrated database on :func:`vector_server` for this test only."""
    return _migrated(vector_server, f"imaginarium_vector_{os.getpid()}_{next(_fresh_counter)}")


@pytest.fixture
async def vector_session(vector_db_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the embedded Postgres whose work is rolled back after the test."""
    engine = create_async_engine(vector_db_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            try:
                factory = async_sessionmaker(
                    bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
                )
                async with factory() as session_:
                    yield session_
            finally:
                if transaction.is_active:
                    await transaction.rollback()
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on 127.0.0.1; tests set the AWS
    credentials it accepts (any) in their environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
