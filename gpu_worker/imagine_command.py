"""``imaginarium imagine "PROMPT" --out DIR``: the offline main job.

It runs the whole path that a Discord ``/imagine`` takes (the shared planner, Postgres, the
broker, a real worker process, the image store) on the embedded defaults, and writes the
grid and the four images to ``DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from core.models import ModelCatalog, ModelConfigError, ModelEntry
from core.settings import Settings, get_settings
from core.spec import JobKind, JobSpec, Lane
from gpu_worker.cli import catalog_of, fail

CLI_USER_DISCORD_ID = 0
"""The user the command line renders as (Discord ids start far above 0)."""


def _imagine_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaginarium imagine",
        description=(
            "Render one prompt through the whole path (database, queue, a worker process, image store) "
            "and write grid.png and 1.png..4.png to a folder."
        ),
    )
    parser.add_argument("prompt", help='the prompt with its flags, e.g. "a red circle --ar 3:2 --seed 7"')
    parser.add_argument("--out", type=Path, required=True, help="folder to write the images to")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the render (default 900)"
    )
    return parser


@dataclasses.dataclass(frozen=True, slots=True)
class ImagineRequest:
    """A parsed ``imagine`` prompt, ready to queue."""

    spec: JobSpec
    model: ModelEntry
    lane: Lane
    cost: int


def plan_imagine(text: str, catalog: ModelCatalog) -> ImagineRequest:
    """Plan one prompt's job the way the bot does (:func:`core.planning.plan_prompt`).

    Raises:
        PromptError: the prompt does not parse, or expands to more than one job.
        KeyError: it names a model the catalog lacks.
    """
    from core import planning
    from core.kinds import recipe
    from core.prompt import PromptError

    jobs = planning.plan_prompt(text, catalog)
    if len(jobs) > 1:
        raise PromptError("", f"this prompt expands to {len(jobs)} jobs; imagine renders one")
    [job] = jobs
    lane = job.spec.lane or Lane.FAST
    cost = planning.price(job.spec, recipe(JobKind.IMAGINE), lane, job.model)
    return ImagineRequest(spec=job.spec, model=job.model, lane=lane, cost=cost)


def imagine_main(argv: list[str]) -> int:
    """``imaginarium imagine "PROMPT" --out DIR``: the offline main job.

    Starts (or joins) the embedded Postgres and Redis unless ``DATABASE_URL`` / a broker URL
    are set, migrates, queues the job for a local user with credits, starts a real worker
    process, waits for the job, writes ``grid.png`` and ``1.png``..``4.png`` to ``DIR``
    and stops the worker.

    Returns:
        0 when the images were written; 1 when the job failed; 2 for a bad prompt or setting.
    """
    prog = "imaginarium imagine"
    args = _imagine_parser().parse_args(argv)
    settings = get_settings()
    from core.prompt import PromptError

    try:
        catalog = catalog_of(settings)
        request = plan_imagine(args.prompt, catalog)
    except PromptError as exc:
        return fail(prog, f"bad prompt: {exc}")
    except KeyError as exc:
        return fail(prog, f"bad prompt: {exc.args[0]}")
    except ModelConfigError as exc:
        return fail(prog, str(exc))
    if request.spec.repeat > 1:
        return fail(prog, "bad prompt: --repeat: imagine renders one job; leave --repeat out")
    if request.spec.image_urls:
        return fail(
            prog, "bad prompt: image prompts need a download; imagine renders offline from text only"
        )
    out = args.out
    if out.exists() and not out.is_dir():
        return fail(prog, f"--out: {out} is not a folder")
    unwritable = _unwritable(out)
    if unwritable is not None:  # found before the render, not after it
        return fail(prog, f"--out: cannot write to {out}: {unwritable}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from db.embedded import open_services_sync
    from gpu_worker.worker_process import WorkerProcess, WorkerStartError

    started = time.perf_counter()
    with open_services_sync(settings, migrate=True) as urls:
        env = {
            "DATABASE_URL": urls.database_url,
            "BROKER_URL": urls.broker_url,
            "REDIS_URL": urls.redis_url,
            "IMAGINARIUM_DATA_DIR": str(settings.data_dir),
        }
        if settings.models_file is not None:
            env["MODELS_FILE"] = str(settings.models_file)
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # The worker boots while this process queues the job; it picks the job up when ready.
        worker = WorkerProcess(
            env=env,
            models=[request.model.name],
            lanes=[request.lane.value],
            log_path=log_dir / "imagine-worker.log",
            extra_args=["--reconcile-every", "0"],
        )
        worker.start()
        try:
            job_id = asyncio.run(_queue_cli_job(urls.database_url, request))
            try:
                worker.wait_ready()
            except WorkerStartError as exc:
                print(f"{prog}: the worker did not start: {exc}", file=sys.stderr)
                return 1
            _publish(urls.broker_url, job_id, request)
            ended = asyncio.run(_wait_for_job(urls.database_url, job_id, worker, args.timeout))
            if ended.status != "done":
                print(f"{prog}: job {job_id} {ended.status}: {ended.error}", file=sys.stderr)
                return 1
            written = _write_outputs(settings, ended, out)
        finally:
            worker.close()
    seconds = time.perf_counter() - started
    print(
        f"wrote {', '.join(p.name for p in written)} to {out} (job {job_id}, seed {ended.seed}, {seconds:.1f} s)"
    )
    return 0


@dataclasses.dataclass(frozen=True, slots=True)
class EndedJob:
    """A job's end as the CLI reads it back."""

    status: str
    error: str | None
    seed: int
    grid_storage_key: str | None
    image_keys: tuple[tuple[int, str], ...]


async def _queue_cli_job(database_url: str, request: ImagineRequest) -> uuid.UUID:
    """Create the job for the local CLI user, granting it the credits it needs first."""
    from db.repositories import create_job, grant_credits, upsert_user
    from db.session import create_engine, create_session_factory

    engine = create_engine(database_url)
    try:
        sessions = create_session_factory(engine)
        async with sessions() as session, session.begin():
            user = await upsert_user(session=session, discord_id=CLI_USER_DISCORD_ID)
            if request.cost > user.balance:
                await grant_credits(session=session, user_id=user.id, amount=request.cost - user.balance)
            new = await create_job(
                session=session,
                user_id=user.id,
                spec=request.spec,
                model=request.model.name,
                lane=request.lane,
                cost=request.cost,
                kind=JobKind.IMAGINE,
                private=True,
            )
            return new.job.id
    finally:
        await engine.dispose()


def _publish(broker_url: str, job_id: uuid.UUID, request: ImagineRequest) -> None:
    from gpu_worker.celery_app import make_celery
    from gpu_worker.tasks import make_publisher

    app = make_celery(broker_url)
    try:
        make_publisher(app)(job_id, request.lane.value, request.model.name)
    finally:
        app.close()


async def _wait_for_job(database_url: str, job_id: uuid.UUID, worker: Any, timeout: float) -> EndedJob:
    """Wait for the job to end: woken by ``NOTIFY job_events``, checked every second anyway.

    Raises:
        TimeoutError: not ended within ``timeout`` seconds.
        RuntimeError: the worker process exited before the job ended.
    """
    from core.tasks import JOB_EVENTS_CHANNEL
    from db.models import JobStatus
    from db.repositories import get_job
    from db.session import create_engine, create_session_factory

    engine = create_engine(database_url)
    woken = asyncio.Event()
    try:
        async with engine.connect() as listen_conn:
            raw = await listen_conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None

            def on_notify(*args: Any) -> None:
                if str(args[-1]) == str(job_id):
                    woken.set()

            await driver.add_listener(JOB_EVENTS_CHANNEL, on_notify)
            sessions = create_session_factory(engine)
            deadline = time.monotonic() + timeout
            while True:
                async with sessions() as session:
                    job = await get_job(session=session, job_id=job_id, with_images=True)
                if job is None:
                    raise RuntimeError(f"job {job_id} vanished")
                if job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED):
                    return EndedJob(
                        status=job.status.value,
                        error=job.error,
                        seed=job.seed,
                        grid_storage_key=job.grid_storage_key,
                        image_keys=tuple((img.index, img.storage_key) for img in job.images),
                    )
                if worker.process is not None and worker.process.poll() is not None:
                    raise RuntimeError(
                        f"the worker exited ({worker.process.returncode}):\n{worker.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} did not end within {timeout:.0f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=1.0)
    finally:
        await engine.dispose()


def _unwritable(out: Path) -> str | None:
    """Why files cannot be written in ``out`` (made if missing, with its parents), or None."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".imaginarium-"):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _write_outputs(settings: Settings, ended: EndedJob, out: Path) -> list[Path]:
    """Copy the job's images from the store: ``grid.png`` and ``<index + 1>.png``."""
    from gpu_worker.store import open_store

    store = open_store(settings)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if ended.grid_storage_key:
        path = out / "grid.png"
        path.write_bytes(store.get(ended.grid_storage_key))
        written.append(path)
    for index, key in sorted(ended.image_keys):
        path = out / f"{index + 1}.png"
        path.write_bytes(store.get(key))
        written.append(path)
    return written
