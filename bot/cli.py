"""``imaginarium bot``: run the Discord bot.

Startup is one ``async with`` block (discord.py's ``examples/advanced_startup.py``): the
services (the embedded Postgres and Redis when no URL is set), the database engine, Redis,
the Celery publisher, then the bot, each closed in reverse order on the way out. SIGTERM
and SIGINT close the bot cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import ImaginariumBot
from bot.discord_endpoints import configure_endpoints
from bot.drawing import EditorConfig
from bot.services.publish import RenderPublisher, make_publisher
from core.logs import configure_logging
from core.models import ModelCatalog, ModelConfigError
from core.models_file import load_catalog
from core.settings import Settings, get_settings
from core.signing import shared_secret
from core.store import open_image_reader
from db.embedded import open_services
from db.session import create_engine, create_session_factory

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imaginarium bot", description="Run the Discord bot.")
    parser.add_argument(
        "--sync-commands",
        choices=("auto", "always", "never"),
        default="auto",
        help="sync slash commands with Discord: when they changed (default), on every start, or never",
    )
    parser.add_argument(
        "--sweep-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often to look for ended jobs that were not posted (default 30)",
    )
    return parser


def bot_main(argv: list[str]) -> int:
    """Run the bot until it is stopped; returns the exit status."""
    args = _parser().parse_args(argv)
    settings = get_settings()
    token = settings.require("discord_token").get_secret_value()
    try:
        catalog = load_catalog(settings.models_file, data_dir=settings.data_dir)
    except ModelConfigError as exc:
        print(f"imaginarium bot: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, secrets=[token])
    # discord.py's gateway logs every heartbeat at DEBUG; keep our own debug output readable.
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger().level))
    configure_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    if settings.metrics_port:
        from core.metrics import serve

        serve(settings.metrics_port)
    asyncio.run(
        main(settings, token, catalog, sync_commands=args.sync_commands, sweep_every=args.sweep_every)
    )
    return 0


async def main(
    settings: Settings,
    token: str,
    catalog: ModelCatalog,
    *,
    sync_commands: str = "auto",
    sweep_every: float = 30.0,
) -> None:
    """Open every dependency, run the bot, and close them all in reverse order."""
    async with (
        open_services(settings) as urls,
        _engine(urls.database_url) as engine,
        Redis.from_url(urls.redis_url) as redis,
        _publisher(urls.broker_url) as publisher,
        ImaginariumBot(
            sessions=create_session_factory(engine),
            publisher=publisher,
            catalog=catalog,
            redis=redis,
            images=open_image_reader(settings),
            database_url=urls.database_url,
            sweep_interval=sweep_every,
            sync_commands=sync_commands,
            image_hosts=settings.allowed_image_hosts(),
            editor=(
                EditorConfig(settings.web_base_url, shared_secret(settings))
                if settings.web_base_url
                else None
            ),
        ) as bot,
    ):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
        await bot.start(token)


@contextlib.asynccontextmanager
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # A burst of /imagine runs a few short transactions each; 20 connections serve it
    # without making every user wait for one.
    engine = create_engine(database_url, pool_size=10, max_overflow=10)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _publisher(broker_url: str) -> AsyncIterator[RenderPublisher]:
    celery = make_publisher(broker_url)
    try:
        yield RenderPublisher(celery)
    finally:
        await asyncio.to_thread(celery.close)
