"""Images per second through the worker path against a plain diffusers loop, side by side.

The worker path is what a ``/imagine`` costs end to end: a job committed in Postgres (credits
held), ``render(job_id)`` published on the broker, a real ``imaginarium worker`` process
claiming it, rendering four images on the tiny random-weights model, scoring them for NSFW,
writing PNGs and the grid to the image store, and recording images, done and the capture
with ``NOTIFY job_events``, which is when the clock stops. The plain loop is the same
model, prompt, size, steps, guidance and seeds in one ``pipe(...)`` call in this process.

Rounds alternate (worker job, plain call, worker job, ...) so that both sides see the same
machine load, and both use the same number of CPU threads. After one warm-up on each side
(the worker loads the model on its first job), it prints seconds per job and images per
second for each side and the worker's overhead relative to the plain render time::

    .venv/bin/python bench/worker.py --size 64 --steps 20 --rounds 3

With no ``DATABASE_URL`` / ``REDIS_URL`` it runs on the embedded Postgres and Redis in a
temporary data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings, load_settings
from db.embedded import ServiceURLs, open_services_sync
from gpu_worker.worker_process import WorkerProcess

PROMPT = "a red circle on a blue background"
IMAGES = 4
SETTLE_S = 0.6
"""Quiet seconds before each timed side (not timed)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One round's seconds on each side."""

    worker_s: float
    worker_busy_s: float
    """From the claim to the recorded end, as the job row says (the worker's own share)."""
    plain_s: float
    phases: dict[str, float]
    """Seconds of each phase inside the worker, as its log line for the job says."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=int, default=64, help="image side in pixels (multiple of 16; default 64)"
    )
    parser.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="measured jobs per side (default 3)")
    parser.add_argument(
        "--queued", type=int, default=0,
        help="then also N jobs queued at once, against N plain calls in a row (default 0: none)",
    )
    parser.add_argument(
        "--finish-behind", choices=("auto", "on", "off"), default="auto",
        help="the worker's FINISH_BEHIND (default auto: off on a CPU)",
    )
    parser.add_argument(
        "--plain-allocator", choices=("default", "worker"), default="default",
        help="the plain side's memory allocator: glibc's defaults (a plain script's), or the "
        "worker's (freed memory kept for the next render: gpu_worker.host), for a like-for-like render",
    )
    parser.add_argument(
        "--threads", default="default",
        help="CPU threads for each side: a number, or 'default' (the worker's own choice, torch's default here)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = _args(argv)
    if args.threads != "default":
        os.environ["OMP_NUM_THREADS"] = str(int(args.threads))
    import torch

    if args.threads != "default":
        torch.set_num_threads(int(args.threads))
    if args.plain_allocator == "worker":
        from gpu_worker.host import keep_freed_memory

        keep_freed_memory()  # this process only: the worker sets its own at start

    from gpu_worker.tiny_model import write_tiny_model

    # Not under /tmp/pytest-*: the embedded Postgres runs as another user when we are root
    # and must be able to reach its data directory.
    root = Path(tempfile.mkdtemp(prefix="imaginarium-bench-"))
    os.chmod(root, 0o755)
    try:
        data_dir = root / "data"
        model = f"bench-{secrets.token_hex(3)}"
        model_dir = write_tiny_model(root / "tiny-sd15", "sd15", seed=0)
        models_file = root / "models.toml"
        models_file.write_text(
            f'default = "{model}"\n[models.{model}]\nfamily = "sd15"\npath = "{model_dir}"\n'
            f'pixel_budget = {args.size * args.size}\nsize_step = 16\nsteps = {args.steps}\ncfg = 7.0\nsampler = "Euler"\n'
        )
        settings = load_settings(data_dir=data_dir, models_file=models_file)
        with open_services_sync(settings, migrate=True) as urls:
            env = {
                "DATABASE_URL": urls.database_url,
                "BROKER_URL": urls.broker_url,
                "REDIS_URL": urls.redis_url,
                "IMAGINARIUM_DATA_DIR": str(data_dir),
                "MODELS_FILE": str(models_file),
                # INFO: each job's log line gives the seconds of its phases (see _phases).
                "LOG_LEVEL": "INFO",
                "FINISH_BEHIND": args.finish_behind,
            }
            with WorkerProcess(
                env=env, models=[model], lanes=["fast"], extra_args=["--reconcile-every", "0"]
            ) as worker:
                samples, burst = asyncio.run(_measure(args, urls, model, settings, worker))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(args, samples)
    if burst is not None:
        worker_s, plain_s = burst
        print(
            f"{args.queued} jobs queued at once (FINISH_BEHIND={args.finish_behind}): worker {worker_s:.2f} s "
            f"({worker_s / args.queued:.3f} s/job), plain calls in a row {plain_s:.2f} s: "
            f"{100 * (worker_s / plain_s - 1):+.1f}%"
        )
    return 0


async def _measure(
    args: argparse.Namespace, urls: ServiceURLs, model: str, settings: Settings, worker: WorkerProcess
) -> tuple[list[Sample], tuple[float, float] | None]:
    import torch

    from core.models_file import load_catalog
    from core.spec import JobKind, JobSpec, Lane, PromptPart
    from core.tasks import JOB_EVENTS_CHANNEL
    from db.models import Job
    from db.repositories import create_job, grant_credits, upsert_user
    from db.session import create_engine, create_session_factory
    from gpu_worker.celery_app import make_celery
    from gpu_worker.registry import load_pipeline
    from gpu_worker.tasks import make_publisher

    publish = make_publisher(make_celery(urls.broker_url))
    engine = create_engine(urls.database_url)
    sessions = create_session_factory(engine)
    ended: dict[str, asyncio.Event] = {}

    entry = load_catalog(settings.models_file, data_dir=settings.data_dir).get(model)
    # The device the worker picks too (CUDA when there is one), so both sides run on the same.
    pipe: Any = load_pipeline(entry)
    device = pipe.device

    def plain(seed: int) -> float:
        started = time.perf_counter()
        pipe(
            prompt=[PROMPT] * IMAGES,
            width=args.size,
            height=args.size,
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            generator=[torch.Generator().manual_seed(seed + i) for i in range(IMAGES)],
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    async def queue_job(seed: int) -> Any:
        async with sessions() as session, session.begin():
            user = await upsert_user(session=session, discord_id=1)
            await grant_credits(session=session, user_id=user.id, amount=1)
            spec = JobSpec(
                parts=(PromptPart(PROMPT),),
                width=args.size,
                height=args.size,
                steps=args.steps,
                cfg=7.0,
                seed=seed,
            )
            return (
                await create_job(
                    session=session,
                    user_id=user.id,
                    spec=spec,
                    model=model,
                    lane=Lane.FAST,
                    cost=1,
                    kind=JobKind.IMAGINE,
                )
            ).job

    async def through_worker(seed: int) -> tuple[float, float, dict[str, float]]:
        started = time.perf_counter()
        job = await queue_job(seed)
        event = ended.setdefault(str(job.id), asyncio.Event())
        publish(job.id, "fast", model)
        await asyncio.wait_for(event.wait(), timeout=3600)
        elapsed = time.perf_counter() - started
        async with sessions() as session:
            row = await session.get(Job, job.id)
            assert row is not None and row.status.value == "done", (row and row.error, worker.log_tail())
            assert row.finished_at is not None and row.started_at is not None
            busy = (row.finished_at - row.started_at).total_seconds()
        # The worker logs the job's phases just after recording it (after the notification).
        phases: dict[str, float] = {}
        for _ in range(50):
            phases = _phases(worker.log_tail(200_000), str(job.id))
            if phases:
                break
            await asyncio.sleep(0.05)
        return elapsed, busy, phases

    async with engine.connect() as listen:
        driver = (await listen.get_raw_connection()).driver_connection
        assert driver is not None

        def on_notify(*notify: object) -> None:
            ended.setdefault(str(notify[-1]), asyncio.Event()).set()

        await driver.add_listener(JOB_EVENTS_CHANNEL, on_notify)
        print(
            f"warming up (model load in the worker, first call here) at {args.size}x{args.size}, {args.steps} steps"
        )
        await through_worker(1000)
        await asyncio.to_thread(plain, 1000)
        samples = []
        for round_ in range(args.rounds):
            seed = 2000 + 10 * round_
            # Each side starts on a quiet machine, so that neither inherits the other's load
            # (a worker on a CPU sizes its threads by the last half second: gpu_worker.host).
            await asyncio.sleep(SETTLE_S)
            worker_s, busy_s, phases = await through_worker(seed)
            await asyncio.sleep(SETTLE_S)
            plain_s = await asyncio.to_thread(plain, seed)
            samples.append(Sample(worker_s, busy_s, plain_s, phases))
            print(
                f"round {round_ + 1}: worker {worker_s:.2f} s (in the worker {busy_s:.2f} s), plain {plain_s:.2f} s"
            )
        burst = None
        if args.queued:
            await asyncio.sleep(SETTLE_S)
            queued = [await queue_job(5000 + 10 * n) for n in range(args.queued)]
            events = [ended.setdefault(str(job.id), asyncio.Event()) for job in queued]
            started = time.perf_counter()
            for job in queued:
                publish(job.id, "fast", model)
            for event in events:
                await asyncio.wait_for(event.wait(), timeout=3600)
            worker_burst = time.perf_counter() - started
            await asyncio.sleep(SETTLE_S)
            plain_burst = sum([await asyncio.to_thread(plain, 5000 + 10 * n) for n in range(args.queued)])
            burst = (worker_burst, plain_burst)
    await engine.dispose()
    return samples, burst


_PHASES = re.compile(r"job (?P<id>[0-9a-f-]{36}) \w+ in [0-9.]+ s \((?P<phases>[^)]*)\)")


def _phases(log: str, job_id: str) -> dict[str, float]:
    """The phase seconds of ``job_id``'s "job ... done in ... (operation 1.2 s, ...)" log line."""
    for match in _PHASES.finditer(log):
        if match["id"] == job_id:
            found = (part.rsplit(" ", 2) for part in match["phases"].split(", "))
            return {name: float(seconds) for name, seconds, _unit in found}
    return {}


def _report(args: argparse.Namespace, samples: list[Sample]) -> None:
    worker = statistics.mean(s.worker_s for s in samples)
    busy = statistics.mean(s.worker_busy_s for s in samples)
    plain = statistics.mean(s.plain_s for s in samples)
    ratios = [s.worker_s / s.plain_s - 1 for s in samples]
    print()
    print(
        f"tiny sd15, {args.size}x{args.size}, {args.steps} steps, {IMAGES} images per job, {args.threads} threads, "
        f"plain side's allocator: {args.plain_allocator}"
    )
    print(f"{'path':<34}{'s/job':>10}{'images/s':>12}")
    print(f"{'worker (enqueue -> done)':<34}{worker:>10.3f}{IMAGES / worker:>12.3f}")
    print(f"{'  of which claim -> recorded':<34}{busy:>10.3f}")
    for name in samples[0].phases:
        seconds = statistics.mean(s.phases.get(name, 0.0) for s in samples)
        print(f"{'    ' + name:<34}{seconds:>10.3f}")
    print(f"{'plain diffusers loop':<34}{plain:>10.3f}{IMAGES / plain:>12.3f}")
    print(
        f"worker overhead: {100 * (worker / plain - 1):+.1f}% of render time (means); "
        f"{100 * statistics.median(ratios):+.1f}% (median of the rounds, each worker job against the plain "
        f"call beside it; per round: {', '.join(f'{100 * r:+.1f}%' for r in ratios)}; target <= 5%)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
