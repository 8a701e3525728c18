"""A training job in a real worker: its pool process killed mid-training, the next attempt
resumes from the last checkpoint and the LoRA is made once; stopped by its owner, the
unspent share of its credits comes back."""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from core.spec import JobKind, JobSpec, Lane, PromptPart
from core.tasks import STOP_KEY_TTL_S, stop_key
from core.training import TrainingKind, TrainingRequest
from db.models import JobStatus, LedgerKind, TrainedLora
from db.repositories import create_job, grant_credits, request_stop, upsert_user
from db.repositories import trained_loras as loras
from gpu_worker.worker_process import WorkerProcess
from tests.integration.conftest import JOB_SIZE, Jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.one_broker]


def _pictures(count: int = 5) -> list[tuple[bytes, int, int, str]]:
    made = []
    for n in range(count):
        image = Image.new("RGB", (64, 64), (40 * n, 180, 60))
        image.paste((250, 240, 10), (16, 16, 40, 44))
        out = io.BytesIO()
        image.save(out, "PNG")
        made.append((out.getvalue(), 64, 64, f"a block {n}"))
    return made


def _training(jobs: Jobs, *, steps: int, cost: int = 10) -> tuple[uuid.UUID, int]:
    """A queued training job (with its LoRA row and pictures) of a new member with 20 credits."""

    async def go() -> tuple[uuid.UUID, int]:
        async with jobs.sessions() as session, session.begin():
            user = await upsert_user(session=session, discord_id=int.from_bytes(os.urandom(6), "big"))
            await grant_credits(session=session, user_id=user.id, amount=20)
            request = TrainingRequest(TrainingKind.SUBJECT, f"zq{uuid.uuid4().hex[:6]}", ("",) * 5, steps, seed=3)
            spec = JobSpec(parts=(PromptPart("a photo"),), seed=3, width=JOB_SIZE, height=JOB_SIZE, model=jobs.model)
            new = await create_job(session=session, user_id=user.id, spec=spec, model=jobs.model, lane=Lane.FAST,
                                   cost=cost, kind=JobKind.TRAIN)
            row = await loras.create_training(session=session, user_id=user.id, guild_id=None,
                                              name=f"n{uuid.uuid4().hex[:8]}", trigger=request.trigger,
                                              kind="subject", model=jobs.model, request=request.to_dict(),
                                              job_id=new.job.id)
            await loras.add_pictures(session=session, lora_id=row.id, pictures=_pictures())
            return new.job.id, user.id

    return jobs.run(go())


def _lora(jobs: Jobs, job_id: uuid.UUID) -> TrainedLora:
    async def go() -> TrainedLora:
        async with jobs.sessions() as session:
            found = await loras.training_of(session=session, job_id=job_id)
            assert found is not None
            return found

    return jobs.run(go())


def _wait(predicate, what: str, worker: WorkerProcess, timeout: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}:\n{worker.log_tail()}"
        time.sleep(0.1)


def test_a_killed_training_resumes_from_its_checkpoint(worker: WorkerProcess, jobs: Jobs, data_dir: Path) -> None:
    job_id, user_id = _training(jobs, steps=120)
    checkpoint = data_dir / "training" / str(job_id) / "checkpoint.pt"
    jobs.publish(job_id)
    _wait(checkpoint.is_file, "no checkpoint was written", worker)
    for pid in worker.pool_pids():  # the pool process dies mid-training (OOM killer, a crash)
        os.kill(pid, signal.SIGKILL)
    job = jobs.wait(job_id, worker, timeout=240)
    assert job.status is JobStatus.DONE and job.attempts == 2, job.error
    assert "resuming the training" in worker.log_tail(10**7)
    lora = _lora(jobs, job_id)
    assert lora.status == "ready" and lora.sha256 and lora.storage_key == lora.sha256
    assert len(jobs.images(job_id)) == 4
    assert jobs.ledger(job_id) == [LedgerKind.HOLD, LedgerKind.CAPTURE] and jobs.balance(user_id) == 20 - 10


def test_a_stopped_training_refunds_its_unspent_share(
    worker: WorkerProcess, jobs: Jobs, data_dir: Path, module_redis_url: str
) -> None:
    import redis

    job_id, user_id = _training(jobs, steps=2000)
    checkpoint = data_dir / "training" / str(job_id) / "checkpoint.pt"
    jobs.publish(job_id)
    _wait(checkpoint.is_file, "no checkpoint was written", worker)

    async def stop() -> None:
        async with jobs.sessions() as session, session.begin():
            assert await request_stop(session=session, job_id=job_id, user_id=None)

    jobs.run(stop())
    redis.Redis.from_url(module_redis_url).set(stop_key(str(job_id)), "1", ex=STOP_KEY_TTL_S)
    job = jobs.wait(job_id, worker)
    assert job.status is JobStatus.CANCELLED
    # Stopped a few percent in: the unspent share (all but what the steps done cost) comes back.
    assert "stopped by its owner at" in (job.error or "")
    assert job.refunded is not None and 9 <= job.refunded <= 10
    assert jobs.balance(user_id) == 20 - 10 + job.refunded
    assert _lora(jobs, job_id).status == "failed"  # its name and trigger are free again
