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
image per page) and the way a web page of 24 does:

- **recent**: newest first; **top**: most liked first; **search**: two words (full-text);
  **typo**: one misspelt word (no prompt has it: the nearest known word is searched);
  **by user**: one member's pictures; **meaning** (on a server with pgvector, where the
  jobs' prompts have embeddings): words no prompt has whose meaning is near some.

Every other query is a keyset page from a random image anywhere in the year (the web's
"older" links, Discord's ◀ ▶). It prints, per mode, how many images the query found
(counted up to 1,000 + 1) and p50 / p95 in ms; the exit status is 1 when a p95 reaches
50 ms.

Figures, with the date and machine, go to ``bench/RESULTS.md``. ``--keep`` leaves the
database for EXPLAIN ANALYZE; ``--reuse`` times a kept one (after upgrading its schema).
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
TARGET_P95_MS = 50.0


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


async def _time(url: str, per_page: int) -> dict[str, tuple[float, float, float]]:
    from sqlalchemy import text

    from db.embeddings import embed_query
    from db.repositories.gallery import Anchor, GalleryWhere, gallery_rows
    from db.session import create_engine, create_session_factory

    engine = create_engine(url)
    sessions = create_session_factory(engine)
    rng = random.Random(f"gallery-bench-queries-{per_page}")
    words = _words()
    try:
        async with sessions() as session:
            guild = int((await session.execute(text("SELECT id FROM guilds LIMIT 1"))).scalar_one())
            owners = [
                int(r[0])
                for r in (
                    await session.execute(text("SELECT discord_id FROM users ORDER BY id LIMIT 500"))
                ).all()
            ]
            # Anchors anywhere in the year: keyset pages as deep as a member can scroll.
            anchors = list(
                await session.scalars(text("SELECT id FROM images WHERE public ORDER BY random() LIMIT 500"))
            )
            meaning = bool(
                await session.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
            )
            if meaning:
                # A serving database has its vector index in memory; a restarted bench one
                # would read it from disk page by page for its first few hundred searches.
                await session.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
                await session.execute(text("SELECT pg_prewarm('prompt_embeddings')"))
                await session.execute(text("SELECT pg_prewarm('ix_prompt_embeddings_hnsw')"))
        modes = {
            "recent": lambda: GalleryWhere(),
            "top": lambda: GalleryWhere(by_likes=True),
            "search": lambda: GalleryWhere(search=" ".join(rng.sample(words[:80], 2))),
            # A misspelt word: no prompt has it, so the nearest known word is searched instead.
            "typo": lambda: GalleryWhere(search=_misspelt(rng.choice(words[:80]), rng)),
            "by user": lambda: GalleryWhere(owner_discord_id=rng.choice(owners)),
        }
        if meaning:
            # Words no prompt has, whose meaning is near some: only the vector index answers.
            modes["meaning"] = lambda: GalleryWhere(search=rng.choice(_PARAPHRASES))
        out: dict[str, tuple[float, float, float]] = {}
        for name, where in modes.items():
            timings, found = [], []
            # One query first, untimed: a serving process has its connections and their
            # prepared statements warm.
            async with sessions() as session:
                await gallery_rows(session=session, guild_id=guild, where=where(), limit=per_page)
            for n in range(QUERIES):
                # Every other page by keyset from a random image (browsing modes and broad
                # searches page that way: the web's "older" links, Discord's ◀ ▶); the others
                # by number, as a first page or a page picked by number in Discord. Ranked
                # searches page through their bounded list by offset either way.
                anchor = Anchor(rng.choice(anchors), backwards=rng.random() < 0.3) if n % 2 else None
                offset = rng.randrange(10) * per_page if per_page == 1 else 0
                started = time.perf_counter()
                async with sessions() as session:
                    got = await asyncio.wait_for(
                        gallery_rows(
                            session=session,
                            guild_id=guild,
                            where=where(),
                            offset=offset,
                            anchor=anchor,
                            limit=per_page,
                            embed=embed_query if meaning else None,
                        ),
                        timeout=60,
                    )
                timings.append((time.perf_counter() - started) * 1000)
                found.append(got.total)
            timings.sort()
            p95 = timings[int(0.95 * (len(timings) - 1))]
            out[name] = (statistics.median(timings), p95, statistics.mean(found))
        return out
    finally:
        await engine.dispose()


_PARAPHRASES = [
    "a kitten on a sofa",
    "a log hut in the snow",
    "spaceship among the stars",
    "a knight guarding a fortress",
    "sea waves at dawn",
    "a puppy playing in a park",
    "foggy woodland in autumn",
    "robots in a neon metropolis",
]


async def _embed_prompts(url: str) -> dict[str, float]:
    """Prompt embeddings for every job, on the server side: each of the vocabulary's words is
    embedded once (the project's encoder) and a prompt's vector is the normalised sum of its
    words' (what a bag-of-words prompt of this bench comes closest to); then the HNSW index."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from db.embeddings import encoder, vector_literal

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    seconds: dict[str, float] = {}
    try:
        started = time.perf_counter()
        words = _words()
        vectors = encoder().encode(words)
        await conn.execute("CREATE TEMP TABLE word_vectors (word text PRIMARY KEY, v vector(384))")
        await conn.executemany(
            "INSERT INTO word_vectors VALUES ($1, CAST($2 AS vector))",
            [(w, vector_literal(v)) for w, v in zip(words, vectors, strict=True)],
        )
        await conn.execute("DROP INDEX IF EXISTS ix_prompt_embeddings_hnsw")
        await conn.execute(
            "INSERT INTO prompt_embeddings (job_id, embedding) "
            "SELECT j.id, l2_normalize(sum(w.v))::halfvec FROM jobs j "
            "CROSS JOIN LATERAL unnest(string_to_array(j.prompt, ' ')) AS t(word) "
            "JOIN word_vectors w ON w.word = t.word GROUP BY j.id"
        )
        seconds["embeddings"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '6GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 1")
        await conn.execute(
            "CREATE INDEX ix_prompt_embeddings_hnsw ON prompt_embeddings USING hnsw (embedding halfvec_cosine_ops)"
        )
        await conn.execute("ANALYZE prompt_embeddings")
        seconds["hnsw index"] = time.perf_counter() - started
    finally:
        await conn.close()
    return seconds


async def _main(args: argparse.Namespace) -> int:
    from db.migrate import upgrade_async

    url = _server_url(args.database_url or os.environ.get("DATABASE_URL"))
    if args.reuse:
        await upgrade_async(url)  # a kept database from before a schema change
    else:
        await _recreate(url)
        await upgrade_async(url)
        loaded = await _load(url, args.jobs, args.users, args.likes)
        if await _has_vector(url):
            loaded |= await _embed_prompts(url)
        print("loaded " + ", ".join(f"{k} {v:.0f} s" for k, v in loaded.items()), flush=True)
    print(f"{args.jobs:,} jobs, {args.users:,} users, {args.likes:,} likes; {QUERIES} queries per mode")
    print(f"{'mode':<10}{'found':>8}{'/gallery p50':>14}{'p95':>8}{'web (24) p50':>15}{'p95':>8}   (ms)")
    discord, web = await _time(url, 1), await _time(url, 24)
    slow = []
    for mode in discord:
        d50, d95, rows = discord[mode]
        w50, w95, _ = web[mode]
        print(f"{mode:<10}{rows:>8,.0f}{d50:>14.0f}{d95:>8.0f}{w50:>15.0f}{w95:>8.0f}")
        slow += [mode] if max(d95, w95) >= TARGET_P95_MS else []
    if slow:
        print(f"p95 at or above {TARGET_P95_MS:.0f} ms: {', '.join(slow)}")
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
    return 1 if slow else 0


async def _has_vector(url: str) -> bool:
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
    finally:
        await conn.close()


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
    parser.add_argument(
        "--embedded",
        metavar="DIR",
        help="run on an embedded Postgres 18 (pgvector: times search by meaning too) with its data in DIR",
    )
    args = parser.parse_args(argv)
    if args.embedded is None:
        return asyncio.run(_main(args))
    from db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(args.embedded).resolve() / "postgres")
    server.acquire()
    if asyncio.run(_size_buffers(server.database_url("postgres"))):
        server._stop_server()  # the new shared_buffers need a restart
        server.release()
        server.acquire()
    try:
        args.database_url = server.database_url("postgres")
        return asyncio.run(_main(args))
    finally:
        server.release()


async def _size_buffers(url: str) -> bool:
    """Give the embedded server shared buffers that hold the embeddings of a million prompts
    and their HNSW index (2 GB together) beside the gallery's other tables: 4 GB, as an
    operator of a community that size would (the default is 128 MB); True when a restart is
    needed."""
    import asyncpg
    from sqlalchemy.engine import make_url

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        if await conn.fetchval("SELECT setting::bigint * 8192 >= 4 * 1024^3 FROM pg_settings WHERE name = 'shared_buffers'"):
            return False
        await conn.execute("ALTER SYSTEM SET shared_buffers = '4GB'")
        return True
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
