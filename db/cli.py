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


def index_prompts_main(argv: list[str]) -> int:
    """Run ``imaginarium index-prompts``: embed the prompts of done jobs that have no
    embedding yet (jobs made before pgvector was installed, or whose worker could not)."""
    parser = argparse.ArgumentParser(
        prog="imaginarium index-prompts",
        description="Embed the prompts of done jobs that search by meaning does not know yet.",
    )
    parser.add_argument("--batch", type=int, default=256, help="prompts per batch (default 256)")
    args = parser.parse_args(argv)
    settings = load_settings()
    with open_services_sync(settings, migrate=True, broker=False) as urls:
        done = asyncio.run(_index_prompts(urls.database_url, args.batch))
    print(f"embedded {done:,} prompts")
    return 0


async def _index_prompts(database_url: str, batch: int) -> int:
    from db import embeddings
    from db.repositories import gallery_search
    from db.session import create_engine, create_session_factory

    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    done, after = 0, None
    try:
        async with sessions() as session:
            if not await gallery_search.warn_if_search_is_text_only(session=session):
                return 0
        while True:
            async with sessions() as session:
                todo = await gallery_search.prompts_to_embed(session=session, limit=batch, after=after)
            if not todo:
                return done
            vectors = await asyncio.to_thread(embeddings.encoder().encode, [prompt for _, prompt in todo])
            async with sessions() as session, session.begin():
                done += await gallery_search.store_embeddings(
                    session=session,
                    vectors={job_id: v.tolist() for (job_id, _), v in zip(todo, vectors, strict=True)},
                )
            after = todo[-1][0]
    finally:
        await engine.dispose()
