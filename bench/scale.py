"""How throughput grows with GPU workers: 1, 2, 4 and 8 on one broker and one database.

Run ``python -m bench.scale`` (``--seconds 2`` per simulated render, ``--jobs-per-worker 6``).
Each worker is a real ``imaginarium worker`` process (Celery, prefork, one job at a time)
started with a simulated GPU (:mod:`gpu_worker.simulated`: every job holds ``--seconds``
without using the CPU, then its placeholder images go through the real store, record and
notification). For each worker count it starts the workers, waits until all consume,
queues ``jobs-per-worker x N`` jobs the way the bot does (job, held credits and outbox row
in one transaction, then the render task published), and reads from Postgres when each was
queued and finished. It prints jobs/s, the ratio to one worker, and p50 / p95 queue-to-done
latency side by side, and exits 1 when N workers give less than 0.9·N times one worker's
jobs/s.

It uses a database of its own (``imaginarium_scale_bench`` on ``DATABASE_URL``'s server) and
Redis database 12 of ``REDIS_URL`` (default ``redis://127.0.0.1:6379``), both emptied first.
``--broker amqp://guest:guest@127.0.0.1:5672//`` runs the queue on RabbitMQ instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DB = "imaginarium_scale_bench"
REDIS_DB = 12
COUNTS = (1, 2, 4, 8)
TARGET = 0.9


def _urls(args: argparse.Namespace) -> tuple[str, str, str]:
    from sqlalchemy.engine import make_url

    base = make_url(os.environ.get("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    database = base.set(database=BENCH_DB).render_as_string(hide_password=False)
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/").rsplit("/", 1)
    redis_url = (redis[0] if redis[-1].isdigit() else "/".join(redis)) + f"/{REDIS_DB}"
    return database, redis_url, args.broker or redis_url


async def _fresh(database_url: str) -> None:
    from db.migrate import drop_database, ensure_database, upgrade_async

    await drop_database(database_url)
    await ensure_database(database_url)
    await upgrade_async(database_url)


def _flush(redis_url: str, broker_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    if broker_url.startswith("amqp"):
        from kombu import Connection

        with Connection(broker_url) as conn:
            channel = conn.channel()
            with contextlib.suppress(Exception):
                channel.queue_purge("render.fast.tiny")


async def _queue(database_url: str, broker_url: str, count: int) -> None:
    """``count`` jobs as the bot queues them: rows and held credits, then the tasks."""
    from bot.services.publish import RenderPublisher, make_publisher
    from core import prompt as grammar
    from core.spec import Lane
    from db import repositories as repo
    from db.session import create_engine, create_session_factory

    engine = create_engine(database_url)
    sessions = create_session_factory(engine)
    try:
        ids = []
        async with sessions() as session, session.begin():
            users = []
            for n in range(10):
                user = await repo.upsert_user(session=session, discord_id=700_000_000_000_000_000 + n)
                await repo.grant_credits(session=session, user_id=user.id, amount=10_000)
                users.append(user)
            for n in range(count):
                new = await repo.create_job(
                    session=session, user_id=users[n % len(users)].id, guild_id=None,
                    spec=grammar.parse(f"scale test {n} --seed {n}"), model="tiny", lane=Lane.FAST, cost=1,
                )
                ids.append(new.job.id)
        publisher = RenderPublisher(make_publisher(broker_url))
        await publisher.publish(sessions=sessions, job_ids=ids)
    finally:
        await engine.dispose()


async def _forget(database_url: str) -> None:
    """Take the warm-up jobs out of the measurement (they are done; only their rows go)."""
    from sqlalchemy import text

    from db.session import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET prompt = 'warm-up' WHERE status = 'done'"))
    finally:
        await engine.dispose()


async def _finished(database_url: str, count: int, timeout: float) -> list[tuple[float, float]]:
    """(queued, finished) epoch seconds of every job once all are done."""
    from sqlalchemy import text

    from db.session import create_engine

    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT extract(epoch FROM queued_at), extract(epoch FROM finished_at) "
                            "FROM jobs WHERE status = 'done' AND prompt <> 'warm-up'"
                        )
                    )
                ).all()
                failed = await conn.scalar(text("SELECT count(*) FROM jobs WHERE status = 'failed'"))
            if failed:
                raise RuntimeError(f"{failed} jobs failed")
            if len(rows) >= count:
                return [(float(q), float(f)) for q, f in rows]
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(rows)} of {count} jobs were done after {timeout:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def _round(workers: int, args: argparse.Namespace, tmp: Path) -> tuple[float, float, float, float]:
    """jobs/s, p50 and p95 latency (s), wall seconds for ``workers`` workers."""
    from gpu_worker.simulated import SECONDS_ENV
    from gpu_worker.worker_process import WorkerProcess

    database_url, redis_url, broker_url = _urls(args)
    asyncio.run(_fresh(database_url))
    _flush(redis_url, broker_url)
    models_file = tmp / "models.toml"
    models_file.write_text('default = "tiny"\n')
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "BROKER_URL": broker_url,
        "IMAGINARIUM_DATA_DIR": str(tmp / "data"), "MODELS_FILE": str(models_file),
        SECONDS_ENV: str(args.seconds), "LOG_LEVEL": "INFO" if args.logs else "WARNING",
    }
    with contextlib.ExitStack() as stack:
        places: list[tuple[list[str], str | None]] = [([], None)] * workers
        if args.netns:
            from bench.netns import namespaces

            ports = sorted({_port(database_url), _port(redis_url), _port(broker_url)})
            places = list(stack.enter_context(namespaces(workers, ports)))
        procs = [
            WorkerProcess(
                env=env if host is None else {
                    **env, "DATABASE_URL": _rehost(database_url, host), "REDIS_URL": _rehost(redis_url, host),
                    "BROKER_URL": _rehost(broker_url, host),
                },
                models=["tiny"], lanes=("fast",), log_path=(args.logs or tmp) / f"worker-{workers}-{i}.log",
                extra_args=["--hostname", f"scale{i}@%h"], wrapper=wrapper,
            )
            for i, (wrapper, host) in enumerate(places)
        ]
        return _measure(procs, workers, args, database_url, broker_url)


def _measure(
    procs: list[Any], workers: int, args: argparse.Namespace, database_url: str, broker_url: str
) -> tuple[float, float, float, float]:
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready(180)
        # One job per worker first, untimed: a worker is ready before its consumer has
        # taken its first message, and a late one would show as a slow tail here.
        asyncio.run(_queue(database_url, broker_url, workers))
        asyncio.run(_finished(database_url, workers, timeout=120))
        asyncio.run(_forget(database_url))
        count = args.jobs_per_worker * workers
        started = time.monotonic()
        asyncio.run(_queue(database_url, broker_url, count))
        times = asyncio.run(_finished(database_url, count, timeout=60 + 10 * args.seconds * args.jobs_per_worker))
        wall = time.monotonic() - started
    finally:
        for proc in procs:
            proc.close()
    first = min(q for q, _ in times)
    last = max(f for _, f in times)
    latencies = sorted(f - q for q, f in times)
    return len(times) / (last - first), statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))], wall


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("+asyncpg", ""))
    return parts.port or {"postgresql": 5432, "redis": 6379, "amqp": 5672}[parts.scheme]


def _rehost(url: str, host: str) -> str:
    """``url`` with its host (127.0.0.1 or localhost) replaced by ``host``."""
    for local in ("127.0.0.1", "localhost"):
        url = url.replace(f"@{local}", f"@{host}").replace(f"//{local}", f"//{host}")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="simulated render time per job (default 2)")
    parser.add_argument("--jobs-per-worker", type=int, default=6, help="jobs queued per worker (default 6)")
    parser.add_argument("--workers", default=",".join(map(str, COUNTS)), help="worker counts (default 1,2,4,8)")
    parser.add_argument("--broker", default=None, help="broker URL (default: Redis database 12)")
    parser.add_argument("--logs", type=Path, default=None, help="keep the workers' logs (INFO) in this folder")
    parser.add_argument(
        "--netns", action="store_true",
        help="each worker on a network namespace of its own, the broker and database reached through "
        "a link to the host (needs root; see bench/netns.py)",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    print(f"simulated render {args.seconds:g} s, {args.jobs_per_worker} jobs per worker, broker "
          f"{'RabbitMQ' if (args.broker or '').startswith('amqp') else 'Redis'}"
          f"{', each worker on its own network namespace' if args.netns else ''}")
    print(f"{'workers':>7}{'jobs':>6}{'jobs/s':>9}{'x one':>8}{'target':>8}{'p50 s':>8}{'p95 s':>8}{'wall s':>8}")
    base = None
    short = []
    with tempfile.TemporaryDirectory(prefix="imaginarium-scale-") as folder:
        for n in counts:
            rate, p50, p95, wall = _round(n, args, Path(folder))
            base = base or rate / n
            ratio = rate / base
            print(f"{n:>7}{n * args.jobs_per_worker:>6}{rate:>9.2f}{ratio:>8.2f}{TARGET * n:>8.2f}"
                  f"{p50:>8.2f}{p95:>8.2f}{wall:>8.1f}", flush=True)
            if ratio < TARGET * n:
                short.append(n)
    database_url, _, _ = _urls(args)
    from db.migrate import drop_database

    asyncio.run(drop_database(database_url))
    if short:
        print(f"below {TARGET:g}·N x one worker: {', '.join(map(str, short))} workers")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
