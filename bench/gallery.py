"""How fast the server gallery answers at the size a busy community reaches.

Run ``python -m bench.gallery`` (``--jobs 1000000`` by default; ``--jobs 20000`` for a quick
look). It creates a database of its own (``imaginarium_gallery_bench`` on ``DATABASE_URL``'s
server, default ``postgresql+asyncpg://postgres@127.0.0.1:5432``), brings it to the newest
schema, and fills it on the server side (``INSERT ... SELECT`` over ``generate_series``: no
row crosses the wire, so a million jobs load in minutes): one server, 20,000 members, done
jobs whose prompts are six words drawn from a 400-word vocabulary, one image each (84.5 %
of them published, 2 % NSFW-flagged and never published), created over a year, and
300,000 likes. Then it times
the project's own ``db.repositories.gallery_rows`` per mode, the way ``/gallery`` asks (one
image per page) and the way a web page of 24 would, on random pages of the first fifty:

- **recent**: newest first; **top**: most liked first; **search**: two words (full-text);
  **typo**: one misspelt word (no prompt has it: the trigram look-alike fallback answers);
  **by user**: one member's pictures.

It prints p50 and p95 (ms) per mode and page size. Figures, with the date and machine, go to
``bench/RESULTS.md``. ``--keep`` leaves the database for EXPLAIN ANALYZE.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

BENCH_DB = "imaginarium_gallery_bench"
VOCABULARY_SIZE = 400
QUERIES = 25


def _words() -> list[str]:
    rng = random.Random("gallery-bench-words")
    base = ["cat", "dog", "fox", "owl", "bear", "wolf", "deer", "horse", "whale", "tiger", "dragon", "robot", "castle", "forest", "river", "mountain", "city", "street", "garden", "ocean", "desert", "island", "village", "tower", "bridge", "lake", "snow", "rain", "storm", "sunset", "sunrise", "night", "moon", "star", "galaxy", "nebula", "portrait", "landscape", "painting", "sketch", "watercolor", "oil", "neon", "cyberpunk", "steampunk", "vintage", "retro", "minimal", "abstract", "surreal", "dreamy", "cozy", "cabin", "winter", "summer", "autumn", "spring", "red", "blue", "green", "golden", "silver", "dark", "bright", "misty", "foggy", "glowing", "ancient", "futuristic", "tiny", "giant"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    while len(base) < VOCABULARY_SIZE:
        base.append("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return base[:VOCABULARY_SIZE]


def _misspelt(word: str, rng: random.Random) -> str:
    at = rng.randrange(len(word))
    return word[:at] + rng.choice("qxz") + word[at + 1 :]


def _server_url(url: str | None) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    return parsed.set(database=BENCH_DB).render_as_string(hide_password=False)


async def _recreate(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = (
        make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {BENCH_DB}")
    finally:
        await conn.close()


async def _load(url: str, jobs: int, users: int, likes: int) -> dict[str, float]:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    seconds: dict[str, float] = {}
    try:
        words = _words()
        await conn.execute("SELECT setseed(0.42)")
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO users (discord_id, settings) SELECT 100000000000000000 + g, '{}'::jsonb "
            "FROM generate_series(1, $1) g",
            users,
        )
        guild = await conn.fetchval(
            "INSERT INTO guilds (discord_id) VALUES (900000000000000001) RETURNING id"
        )
        seconds["users"] = time.perf_counter() - started
        started = time.perf_counter()
        # The status trigger admits only queued rows on insert; this database is the bench's own.
        await conn.execute("ALTER TABLE jobs DISABLE TRIGGER USER")
        await conn.execute(
            """
            INSERT INTO jobs (kind, user_id, guild_id, prompt, params, model, seed, lane, status,
                              created_at, queued_at, started_at, finished_at, cost)
            SELECT 'imagine', 1 + (hashint % $2), $3,
                   (SELECT string_agg(($4::text[])[1 + ((hashint >> (k * 4)) % $5)], ' ')
                      FROM generate_series(1, 6) k),
                   '{}'::jsonb, 'shapes', g, 'fast', 'done', at, at, at, at, 1
            FROM (
                SELECT g, abs(hashtextextended(g::text, 7)) AS hashint,
                       now() - (g::float / $1) * interval '365 days' AS at
                FROM generate_series(1, $1) g
            ) AS made
            """,
            jobs,
            users,
            guild,
            words,
            len(words),
        )
        await conn.execute("ALTER TABLE jobs ENABLE TRIGGER USER")
        seconds["jobs"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(
            """
            INSERT INTO images (job_id, index, seed, storage_key, width, height, sha256, nsfw, public, created_at)
            SELECT id, 0, seed, md5(id::text) || '.png', 512, 512, md5(id::text), draw < 0.02,
                   draw >= 0.02 AND draw < 0.865, created_at
            FROM (SELECT *, random() AS draw FROM jobs) AS drawn
            """
        )
        seconds["images"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(
            """
            INSERT INTO gallery_likes (user_id, image_id)
            SELECT DISTINCT 1 + floor(random() * $1)::bigint,
                   (SELECT min(id) FROM images) + floor(power(random(), 3) * (SELECT count(*) FROM images))::bigint
            FROM generate_series(1, $2)
            ON CONFLICT DO NOTHING
            """,
            users,
            likes,
        )
        seconds["likes"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        seconds["analyze"] = time.perf_counter() - started
    finally:
        await conn.close()
    return seconds


async def _time(url: str, per_page: int) -> dict[str, tuple[float, float]]:
    from db.repositories.gallery import GalleryWhere, gallery_rows
    from db.session import create_engine, create_session_factory

    engine = create_engine(url)
    sessions = create_session_factory(engine)
    rng = random.Random(f"gallery-bench-queries-{per_page}")
    words = _words()
    try:
        async with sessions() as session:
            from sqlalchemy import text

            guild = int((await session.execute(text("SELECT id FROM guilds LIMIT 1"))).scalar_one())
            owners = [
                int(r[0])
                for r in (
                    await session.execute(text("SELECT discord_id FROM users ORDER BY id LIMIT 500"))
                ).all()
            ]
        modes = {
            "recent": lambda: GalleryWhere(),
            "top": lambda: GalleryWhere(by_likes=True),
            "search": lambda: GalleryWhere(search=" ".join(rng.sample(words[:80], 2))),
            # A misspelt word: no prompt has it, so the trigram look-alike fallback answers.
            "typo": lambda: GalleryWhere(search=_misspelt(rng.choice(words[:80]), rng)),
            "by user": lambda: GalleryWhere(owner_discord_id=rng.choice(owners)),
        }
        out: dict[str, tuple[float, float]] = {}
        for name, where in modes.items():
            timings = []
            for _ in range(QUERIES):
                offset = rng.randrange(50) * per_page
                started = time.perf_counter()
                async with sessions() as session:
                    await asyncio.wait_for(
                        gallery_rows(
                            session=session, guild_id=guild, where=where(), offset=offset, limit=per_page
                        ),
                        timeout=60,
                    )
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            out[name] = (statistics.median(timings), timings[int(0.95 * (len(timings) - 1))])
        return out
    finally:
        await engine.dispose()


async def _main(args: argparse.Namespace) -> int:
    from db.migrate import upgrade_async

    url = _server_url(args.database_url or os.environ.get("DATABASE_URL"))
    if args.reuse:
        await upgrade_async(url)  # a kept database from before a schema change
    else:
        await _recreate(url)
        await upgrade_async(url)
        loaded = await _load(url, args.jobs, args.users, args.likes)
        print("loaded " + ", ".join(f"{k} {v:.0f} s" for k, v in loaded.items()), flush=True)
    print(f"{args.jobs:,} jobs, {args.users:,} users, {args.likes:,} likes; {QUERIES} queries per mode")
    print(f"{'mode':<10}{'/gallery p50':>14}{'p95':>10}{'web (24) p50':>15}{'p95':>10}   (ms)")
    discord, web = await _time(url, 1), await _time(url, 24)
    for mode in discord:
        d50, d95 = discord[mode]
        w50, w95 = web[mode]
        print(f"{mode:<10}{d50:>14.0f}{d95:>10.0f}{w50:>15.0f}{w95:>10.0f}")
    if not args.keep:
        import asyncpg
        from sqlalchemy.engine import make_url

        admin = (
            make_url(url)
            .set(drivername="postgresql", database="postgres")
            .render_as_string(hide_password=False)
        )
        conn = await asyncpg.connect(admin)
        await conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        await conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--likes", type=int, default=300_000)
    parser.add_argument(
        "--database-url", default=None, help="any database on the server to use (default DATABASE_URL)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench database (for EXPLAIN ANALYZE)")
    parser.add_argument("--reuse", action="store_true", help="time a database kept by an earlier --keep run")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
