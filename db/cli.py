"""``imaginarium migrate``: bring the database schema to a revision."""

from __future__ import annotations

import argparse
import asyncio

from core.settings import load_settings
from db.embedded import open_services_sync
from db.migrate import current_revision, downgrade, ensure_database, upgrade


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaginarium migrate",
        description=(
            "Upgrade (or downgrade) the database schema. Uses DATABASE_URL, or the embedded "
            "Postgres in the data dir when it is unset. The database is created if missing."
        ),
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--revision", default="head", help="upgrade to this revision (default: head)")
    group.add_argument("--downgrade", metavar="REVISION", help="downgrade to this revision (e.g. base)")
    return parser


def migrate_main(argv: list[str]) -> int:
    """Run ``imaginarium migrate [--revision REV | --downgrade REV]``; returns the exit status."""
    args = _parser().parse_args(argv)
    settings = load_settings()
    # Migrations need no broker: start no Redis for them.
    with open_services_sync(settings, migrate=False, broker=False) as urls:
        asyncio.run(ensure_database(urls.database_url))
        if args.downgrade is not None:
            downgrade(urls.database_url, args.downgrade)
        else:
            upgrade(urls.database_url, args.revision)
        revision = asyncio.run(current_revision(urls.database_url))
    where = "the embedded database" if urls.embedded_postgres else "the database"
    print(f"{where} is at revision {revision or 'base (empty)'}")
    return 0
