"""The embedded Postgres and Redis: real servers, data kept across restarts, shared by processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from core.settings import Settings
from db.embedded import EmbeddedPostgres, EmbeddedRedis, open_services, open_services_sync
from db.migrate import current_revision, ensure_database, head_revision

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """One data dir for the module (initdb is the slow part); servers are stopped after each test."""
    # Not under pytest's tmp_path: pytest keeps /tmp/pytest-of-<user> at mode 0700 (and
    # resets it when another run starts), which the unprivileged user that the embedded
    # Postgres runs as under root could not traverse.
    path = Path(tempfile.mkdtemp(prefix="imaginarium-embedded-")) / "data"
    path.mkdir()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_server_left_running(data_dir: Path) -> Iterator[None]:
    yield
    # A failed test must not leave servers behind for the next one (or the machine).
    for server in (EmbeddedPostgres(data_dir / "postgres"), EmbeddedRedis(data_dir / "redis")):
        if server.is_running():
            server._stop_server()
        server.handles_path.unlink(missing_ok=True)


def _settings(data_dir: Path, **urls: str | None) -> Settings:
    values: dict[str, object] = {
        "database_url": None,
        "broker_url": None,
        "redis_url": None,
        "data_dir": data_dir,
    }
    values.update(urls)
    return Settings(**values)  # type: ignore[arg-type]


def _dsn(url: str) -> tuple[str, dict[str, str]]:
    parsed = make_url(url)
    query = {k: v if isinstance(v, str) else v[0] for k, v in parsed.query.items()}
    return parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False), query


async def _sql(url: str, statement: str) -> list[asyncpg.Record]:
    dsn, query = _dsn(url)
    conn = await asyncpg.connect(dsn, **query)
    try:
        if statement.lstrip().upper().startswith("SELECT"):
            return await conn.fetch(statement)
        await conn.execute(statement)  # may hold several commands
        return []
    finally:
        await conn.close()


def test_embedded_postgres_keeps_its_data_across_a_restart(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    pg.acquire()
    url = pg.database_url("keep")
    assert url.startswith("postgresql+asyncpg://") and "host=" in url
    asyncio.run(ensure_database(url))
    asyncio.run(_sql(url, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('still here')"))
    pg.release()
    assert not pg.is_running()
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    pg.acquire()
    try:
        rows = asyncio.run(_sql(pg.database_url("keep"), "SELECT body FROM notes"))
        assert [r["body"] for r in rows] == ["still here"]
    finally:
        pg.release()
    assert not pg.is_running()


def test_embedded_redis_keeps_its_data_across_a_restart(data_dir: Path) -> None:
    rd = EmbeddedRedis(data_dir / "redis")
    rd.acquire()
    client = redis.Redis.from_url(rd.redis_url)
    client.set("greeting", "hello")
    client.close()
    rd.release()
    assert not rd.is_running()
    assert rd.dump_file.exists()

    rd.acquire()
    try:
        client = redis.Redis.from_url(rd.redis_url)
        assert client.get("greeting") == b"hello"
        client.close()
    finally:
        rd.release()
    assert not rd.is_running()


def test_embedded_redis_keeps_what_was_written_a_second_before_a_kill_9(data_dir: Path) -> None:
    """The broker's messages survive a crash: an append-only file synced every second."""
    rd = EmbeddedRedis(data_dir / "redis")
    rd.acquire()
    client = redis.Redis.from_url(rd.redis_url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.rpush("render.fast.tiny", *[f"message {i}" for i in range(100)])
    client.close()
    time.sleep(1.5)  # one fsync
    pid = int(rd.pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while rd.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    rd.release()  # the server is gone already

    rd.acquire()
    try:
        client = redis.Redis.from_url(rd.redis_url)
        assert client.llen("render.fast.tiny") == 100
        client.close()
    finally:
        rd.release()


def test_a_snapshot_only_redis_folder_keeps_its_data_and_gains_the_append_only_file(data_dir: Path) -> None:
    folder = data_dir / "redis"
    rd = EmbeddedRedis(folder)
    rd.acquire()
    client = redis.Redis.from_url(rd.redis_url)
    client.config_set("appendonly", "no")  # as a folder written before the append-only file
    client.set("greeting", "hello")
    client.close()
    rd.release()
    for leftover in ("appendonlydir", "appendonly.aof"):
        path = folder / leftover
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)

    rd.acquire()
    try:
        client = redis.Redis.from_url(rd.redis_url)
        assert client.get("greeting") == b"hello"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        rd.release()


def test_open_services_starts_migrates_and_stops(data_dir: Path) -> None:
    with open_services_sync(_settings(data_dir)) as urls:
        assert urls.embedded_postgres and urls.embedded_redis
        assert make_url(urls.database_url).database == "imaginarium"
        assert asyncio.run(current_revision(urls.database_url)) == head_revision()
        assert urls.broker_url.startswith("redis+socket://") and urls.redis_url.startswith("unix://")
        assert redis.Redis.from_url(urls.redis_url).ping()
    assert not EmbeddedPostgres(data_dir / "postgres").is_running()
    assert not EmbeddedRedis(data_dir / "redis").is_running()


async def test_open_services_async(data_dir: Path) -> None:
    async with open_services(_settings(data_dir), broker=False) as urls:
        assert urls.embedded_postgres and not urls.embedded_redis
        assert await current_revision(urls.database_url) == head_revision()
    assert not EmbeddedPostgres(data_dir / "postgres").is_running()


def test_explicit_urls_win_and_start_nothing(tmp_path: Path, db_url: str) -> None:
    settings = _settings(
        tmp_path / "unused",
        database_url=db_url,
        broker_url="amqp://guest@127.0.0.1:5672//",
        redis_url="redis://127.0.0.1:6379/0",
    )
    with open_services_sync(settings) as urls:
        assert urls.database_url == db_url
        assert urls.broker_url == "amqp://guest@127.0.0.1:5672//"
        assert urls.redis_url == "redis://127.0.0.1:6379/0"
        assert not urls.embedded_postgres and not urls.embedded_redis
    assert not (tmp_path / "unused").exists()


def test_a_redis_broker_doubles_as_the_progress_redis(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path / "unused", database_url=db_url, broker_url="redis://127.0.0.1:6379/3")
    with open_services_sync(settings) as urls:
        assert (urls.broker_url, urls.redis_url) == ("redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3")
    assert not (tmp_path / "unused").exists()


def test_an_explicit_database_with_an_embedded_broker(data_dir: Path, db_url: str) -> None:
    with open_services_sync(_settings(data_dir, database_url=db_url)) as urls:
        assert urls.database_url == db_url and not urls.embedded_postgres
        assert urls.embedded_redis and redis.Redis.from_url(urls.redis_url).ping()
        assert not EmbeddedPostgres(data_dir / "postgres").is_running()


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    import asyncpg, redis
    from sqlalchemy.engine import make_url
    from core.settings import Settings
    from db.embedded import open_services_sync

    settings = Settings(database_url=None, broker_url=None, redis_url=None, data_dir=Path(sys.argv[1]))
    with open_services_sync(settings) as urls:
        url = make_url(urls.database_url)
        async def main():
            conn = await asyncpg.connect(
                url.set(drivername="postgresql", query={}).render_as_string(False), host=url.query["host"]
            )
            try:
                seen = await conn.fetchval("SELECT count(*) FROM users WHERE discord_id = 1")
                await conn.execute("INSERT INTO users (discord_id) VALUES (2)")
                return seen
            finally:
                await conn.close()
        seen = asyncio.run(main())
        client = redis.Redis.from_url(urls.redis_url)
        client.set("child", "was here")
        print(json.dumps({"seen": seen, "database_url": urls.database_url, "redis_url": urls.redis_url}))
    """
)


def test_a_second_process_shares_the_running_servers(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    with open_services_sync(_settings(data_dir)) as urls:
        asyncio.run(_sql(urls.database_url, "INSERT INTO users (discord_id) VALUES (1)"))
        info = pg._postmaster()
        assert info is not None
        pid = info.pid

        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(data_dir)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=180,
        )
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout.strip().splitlines()[-1])
        assert report == {"seen": 1, "database_url": urls.database_url, "redis_url": urls.redis_url}

        # The child let go, but this process still uses the servers: they kept running.
        info = pg._postmaster()
        assert info is not None and info.pid == pid
        rows = asyncio.run(_sql(urls.database_url, "SELECT discord_id FROM users ORDER BY discord_id"))
        assert [r["discord_id"] for r in rows] == [1, 2]
        assert redis.Redis.from_url(urls.redis_url).get("child") == b"was here"
    assert not pg.is_running()
    assert not EmbeddedRedis(data_dir / "redis").is_running()


def test_a_user_that_died_does_not_keep_the_server_up(data_dir: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rd = EmbeddedRedis(data_dir / "redis")
    rd.acquire()
    # As if a crashed process had opened it too and never let go.
    handles = json.loads(rd.handles_path.read_text())
    rd.handles_path.write_text(json.dumps([*handles, dead.pid]))
    rd.release()
    assert not rd.is_running()
    assert json.loads(rd.handles_path.read_text()) == []


def test_nested_use_in_one_process_is_counted(data_dir: Path) -> None:
    rd = EmbeddedRedis(data_dir / "redis")
    rd.acquire()
    rd.acquire()
    rd.release()
    assert rd.is_running()
    rd.release()
    assert not rd.is_running()
