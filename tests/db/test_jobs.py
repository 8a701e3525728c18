"""Jobs from creation to a terminal state; every path keeps the credits right."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import JobKind, JobSpec, Lane
from core.tasks import MAX_ATTEMPTS, RENDER_TASK
from db import repositories as repo
from db.models import CreditLedger, Image, Job, JobStatus, LedgerKind, Outbox, User
from tests.db.factories import make_spec, next_discord_id

COST = 8


async def _balance(session: AsyncSession, user: User) -> int:
    return (await session.scalar(select(User.balance).where(User.id == user.id))) or 0


async def _create(session: AsyncSession, user: User, **kwargs: object) -> repo.NewJob:
    values: dict[str, object] = {
        "spec": make_spec(),
        "model": "tiny",
        "lane": Lane.FAST,
        "cost": COST,
        "interaction_id": next_discord_id(),
    }
    values.update(kwargs)
    return await repo.create_job(session=session, user_id=user.id, **values)  # type: ignore[arg-type]


def _images(count: int = 4) -> list[repo.NewImage]:
    return [
        repo.NewImage(
            index=i, seed=1234 + i, storage_key=f"img/{i}.png", width=512, height=512, sha256=f"{i:064x}"
        )
        for i in range(count)
    ]


async def _running(session: AsyncSession, user: User, **kwargs: object) -> Job:
    job = (await _create(session, user, **kwargs)).job
    claimed = await repo.claim_job(session=session, job_id=job.id)
    assert claimed is not None
    return claimed


# -- create ---------------------------------------------------------------------------


async def test_create_job_holds_the_cost_and_writes_the_outbox(session: AsyncSession, user: User) -> None:
    created_at = datetime.now(UTC)
    new = await _create(
        session,
        user,
        kind=JobKind.VARIATION,
        variant="strong",
        channel_id=42,
        interaction_token="tok",
        interaction_created_at=created_at,
        private=True,
    )
    job = new.job
    assert new.created
    assert job.status == JobStatus.QUEUED
    assert (job.kind, job.variant, job.channel_id, job.private) == (JobKind.VARIATION, "strong", 42, True)
    assert job.interaction_token == "tok" and job.interaction_created_at == created_at
    assert job.prompt == "a lighthouse at dusk" and job.seed == 1234 and job.attempts == 0
    assert JobSpec.from_dict(job.params) == make_spec()
    assert await _balance(session, user) == 100 - COST
    outbox = list(await session.scalars(select(Outbox).where(Outbox.job_id == job.id)))
    assert [(o.task_name, o.published_at) for o in outbox] == [(RENDER_TASK, None)]


async def test_create_job_draws_a_seed_and_stores_it_in_the_spec(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user, spec=make_spec(seed=None))).job
    assert 0 <= job.seed < 2**32
    assert job.params["seed"] == job.seed


async def test_create_job_is_idempotent_on_the_interaction(session: AsyncSession, user: User) -> None:
    interaction = next_discord_id()
    first = await _create(session, user, interaction_id=interaction)
    again = await _create(session, user, interaction_id=interaction, spec=make_spec("something else"))
    assert not again.created
    assert again.job.id == first.job.id and again.job.prompt == "a lighthouse at dusk"
    assert await _balance(session, user) == 100 - COST
    assert await session.scalar(select(func.count()).where(Job.interaction_id == interaction)) == 1
    assert await session.scalar(select(func.count()).where(Outbox.job_id == first.job.id)) == 1


async def test_create_job_refuses_and_leaves_nothing_when_credits_are_short(
    session: AsyncSession, user: User
) -> None:
    interaction = next_discord_id()
    with pytest.raises(repo.InsufficientCredits) as refused:
        await _create(session, user, cost=101, interaction_id=interaction)
    assert (refused.value.needed, refused.value.balance) == (101, 100)
    assert "costs 101" in str(refused.value) and "balance is 100" in str(refused.value)
    # The caller may carry on and commit: nothing of the refused job is there to commit.
    await session.commit()
    assert await repo.get_job_by_interaction(session=session, interaction_id=interaction) is None
    assert await session.scalar(select(func.count()).where(Job.user_id == user.id)) == 0
    assert (
        await session.scalar(select(func.count()).select_from(Outbox).join(Job).where(Job.user_id == user.id))
        == 0
    )
    assert await _balance(session, user) == 100


async def test_a_free_job_writes_no_ledger_row(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user, cost=0, lane=Lane.RELAX)).job
    assert job.lane == Lane.RELAX
    assert await session.scalar(select(func.count()).where(CreditLedger.job_id == job.id)) == 0
    assert await _balance(session, user) == 100


async def test_a_child_job_remembers_its_parent_image(session: AsyncSession, user: User) -> None:
    parent = (await _create(session, user)).job
    child = (await _create(session, user, kind=JobKind.UPSCALE, parent_id=parent.id, parent_index=2)).job
    assert (child.parent_id, child.parent_index) == (parent.id, 2)


# -- claim / requeue ------------------------------------------------------------------


async def test_claim_lets_exactly_one_worker_through(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user)).job
    claimed = await repo.claim_job(session=session, job_id=job.id)
    assert claimed is not None and claimed.status == JobStatus.RUNNING
    assert claimed.attempts == 1 and claimed.started_at is not None
    assert await repo.claim_job(session=session, job_id=job.id) is None


async def test_requeue_puts_a_running_job_back_for_another_attempt(session: AsyncSession, user: User) -> None:
    job = await _running(session, user)
    assert await repo.requeue_job(session=session, job_id=job.id, error="worker lost") == JobStatus.QUEUED
    assert job.status == JobStatus.QUEUED and job.error == "worker lost" and job.started_at is None
    again = await repo.claim_job(session=session, job_id=job.id)
    assert again is not None and again.attempts == 2


async def test_a_job_runs_at_most_max_attempts_then_fails_and_refunds(
    session: AsyncSession, user: User
) -> None:
    job = (await _create(session, user)).job
    for _ in range(MAX_ATTEMPTS - 1):
        assert await repo.claim_job(session=session, job_id=job.id) is not None
        assert await repo.requeue_job(session=session, job_id=job.id, error="worker lost") == JobStatus.QUEUED
    assert await repo.claim_job(session=session, job_id=job.id) is not None
    assert await repo.requeue_job(session=session, job_id=job.id, error="worker lost") == JobStatus.FAILED
    assert job.status == JobStatus.FAILED and job.attempts == MAX_ATTEMPTS
    assert job.error is not None and f"after {MAX_ATTEMPTS} attempts" in job.error
    assert await _balance(session, user) == 100


async def test_claim_refuses_a_queued_job_that_used_all_attempts(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user)).job
    await session.execute(
        text("UPDATE jobs SET attempts = :n WHERE id = :id"), {"n": MAX_ATTEMPTS, "id": job.id}
    )
    assert await repo.claim_job(session=session, job_id=job.id) is None


async def test_requeue_ignores_a_job_that_is_not_running(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user)).job
    assert await repo.requeue_job(session=session, job_id=job.id) is None
    assert job.status == JobStatus.QUEUED


# -- finish ---------------------------------------------------------------------------


async def test_finish_stores_images_marks_done_and_captures(session: AsyncSession, user: User) -> None:
    job = await _running(session, user)
    assert await repo.finish_job(
        session=session, job_id=job.id, images=_images(), grid_storage_key="grid.png"
    )
    loaded = await repo.get_job(session=session, job_id=job.id, with_images=True)
    assert loaded is not None and loaded.status == JobStatus.DONE and loaded.finished_at is not None
    assert loaded.grid_storage_key == "grid.png"
    assert [(i.index, i.seed, i.public) for i in loaded.images] == [(i, 1234 + i, True) for i in range(4)]
    kinds = list(await session.scalars(select(CreditLedger.kind).where(CreditLedger.job_id == job.id)))
    assert sorted(kinds) == sorted([LedgerKind.HOLD, LedgerKind.CAPTURE])
    assert await _balance(session, user) == 100 - COST


async def test_finishing_twice_captures_once_and_stores_images_once(
    session: AsyncSession, user: User
) -> None:
    job = await _running(session, user)
    assert await repo.finish_job(session=session, job_id=job.id, images=_images())
    assert not await repo.finish_job(session=session, job_id=job.id, images=_images())
    assert await session.scalar(select(func.count()).where(Image.job_id == job.id)) == 4
    captures = select(func.count()).where(
        CreditLedger.job_id == job.id, CreditLedger.kind == LedgerKind.CAPTURE
    )
    assert await session.scalar(captures) == 1
    assert await _balance(session, user) == 100 - COST


@pytest.mark.parametrize("end", ["cancelled", "failed", "queued"])
async def test_finish_refuses_a_job_that_is_not_running(session: AsyncSession, user: User, end: str) -> None:
    job = (await _create(session, user)).job
    if end == "cancelled":
        await repo.cancel_job(session=session, job_id=job.id)
    elif end == "failed":
        await repo.fail_job(session=session, job_id=job.id, error="boom")
    with pytest.raises(repo.JobStateError, match=f"is {end}"):
        await repo.finish_job(session=session, job_id=job.id, images=_images())
    assert await session.scalar(select(func.count()).where(Image.job_id == job.id)) == 0


async def test_finish_refuses_an_unknown_job(session: AsyncSession) -> None:
    with pytest.raises(repo.JobStateError, match="does not exist"):
        await repo.finish_job(session=session, job_id=uuid.uuid4(), images=_images())


async def test_private_jobs_and_nsfw_images_stay_out_of_the_gallery(
    session: AsyncSession, user: User
) -> None:
    private = await _running(session, user, private=True)
    await repo.finish_job(session=session, job_id=private.id, images=_images(2))
    public = await _running(session, user)
    flagged = [repo.NewImage(0, 1, "a", 64, 64, "0" * 64, nsfw_score=0.97, nsfw=True)]
    clean = [repo.NewImage(1, 2, "b", 64, 64, "1" * 64, nsfw_score=0.01)]
    await repo.finish_job(session=session, job_id=public.id, images=flagged + clean)
    visible = await session.execute(
        select(Image.job_id, Image.index).where(Image.job_id.in_([private.id, public.id]), Image.public)
    )
    assert [tuple(row) for row in visible] == [(public.id, 1)]


async def test_add_images_keeps_the_first_copy_of_an_index(session: AsyncSession, user: User) -> None:
    job = await _running(session, user)
    await repo.add_images(session=session, job_id=job.id, images=_images(1))
    stored = await repo.add_images(
        session=session, job_id=job.id, images=[repo.NewImage(0, 9, "other.png", 64, 64, "f" * 64)]
    )
    assert [(i.storage_key, i.seed) for i in stored] == [("img/0.png", 1234)]


# -- fail / cancel --------------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True], ids=["queued", "running"])
async def test_fail_refunds_once(session: AsyncSession, user: User, running: bool) -> None:
    job = await _running(session, user) if running else (await _create(session, user)).job
    assert await repo.fail_job(session=session, job_id=job.id, error="out of memory")
    assert not await repo.fail_job(session=session, job_id=job.id, error="again")
    assert job.status == JobStatus.FAILED and job.error == "out of memory"
    assert await _balance(session, user) == 100


async def test_a_done_job_cannot_fail(session: AsyncSession, user: User) -> None:
    job = await _running(session, user)
    await repo.finish_job(session=session, job_id=job.id, images=_images())
    assert not await repo.fail_job(session=session, job_id=job.id, error="late")
    assert job.status == JobStatus.DONE
    assert await _balance(session, user) == 100 - COST


async def test_cancel_works_only_while_queued_and_refunds(session: AsyncSession, user: User) -> None:
    queued = (await _create(session, user)).job
    running = await _running(session, user)
    assert await repo.cancel_job(session=session, job_id=queued.id, user_id=user.id)
    assert not await repo.cancel_job(session=session, job_id=queued.id)
    assert not await repo.cancel_job(session=session, job_id=running.id)
    assert (queued.status, running.status) == (JobStatus.CANCELLED, JobStatus.RUNNING)
    assert await _balance(session, user) == 100 - COST  # only the running job's hold remains


async def test_only_the_owner_can_cancel(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user)).job
    other = await repo.upsert_user(session=session, discord_id=next_discord_id())
    assert not await repo.cancel_job(session=session, job_id=job.id, user_id=other.id)
    assert job.status == JobStatus.QUEUED


async def test_a_running_job_stops_on_request_and_refunds_the_unrendered_share(
    session: AsyncSession, user: User
) -> None:
    job = await _running(session, user, cost=10)
    other = await repo.upsert_user(session=session, discord_id=next_discord_id())
    assert not await repo.request_stop(session=session, job_id=job.id, user_id=other.id)
    assert await repo.request_stop(session=session, job_id=job.id, user_id=user.id)
    first = job.cancel_requested_at
    assert first is not None and await repo.request_stop(session=session, job_id=job.id)
    assert job.cancel_requested_at == first  # asking twice keeps the first request
    assert not job.has_result and await _balance(session, user) == 90

    assert await repo.finish_cancelled(session=session, job_id=job.id, rendered=0.3) == 7
    assert await repo.finish_cancelled(session=session, job_id=job.id, rendered=0.0) is None  # ended
    assert (job.status, job.refunded) == (JobStatus.CANCELLED, 7) and job.has_result
    assert job.error == "stopped by its owner at 30%"
    assert await _balance(session, user) == 97  # 3 of 10 charged
    kinds = await session.scalars(
        select(CreditLedger.kind).where(CreditLedger.job_id == job.id).order_by(CreditLedger.id)
    )
    assert list(kinds) == [LedgerKind.HOLD, LedgerKind.CAPTURE, LedgerKind.REFUND]
    assert not await repo.refund_credits(session=session, job_id=job.id, amount=3)  # once per job
    assert await _balance(session, user) == 97
    delivered = await session.scalars(select(Job.id).where(Job.has_result, Job.id == job.id))
    assert list(delivered) == [job.id]


@pytest.mark.parametrize(
    ("cost", "rendered", "refund"),
    [(10, 0.0, 10), (10, 1.0, 0), (1, 0.3, 1), (1, 0.5, 1), (1, 0.7, 0), (4, 0.25, 3), (0, 0.5, 0), (5, 2.0, 0)],
)
def test_the_unrendered_share_is_rounded_to_the_nearest_credit(cost: int, rendered: float, refund: int) -> None:
    assert repo.unrendered_refund(cost, rendered) == refund


async def test_a_queued_job_cannot_be_asked_to_stop(session: AsyncSession, user: User) -> None:
    job = (await _create(session, user)).job
    assert not await repo.request_stop(session=session, job_id=job.id)
    assert await repo.finish_cancelled(session=session, job_id=job.id, rendered=0.5) is None
    assert job.status == JobStatus.QUEUED and job.cancel_requested_at is None


# -- delivery, caps, reconciler, outbox -------------------------------------------------


async def test_result_message_is_stored_once(session: AsyncSession, user: User) -> None:
    job = await _running(session, user)
    assert await repo.set_result_message(session=session, job_id=job.id, channel_id=7, message_id=70)
    assert not await repo.set_result_message(session=session, job_id=job.id, channel_id=7, message_id=71)
    assert (job.result_channel_id, job.result_message_id) == (7, 70)


async def test_count_active_jobs(session: AsyncSession, user: User) -> None:
    for _ in range(3):
        await _create(session, user)
    await _running(session, user)
    done = await _running(session, user)
    await repo.finish_job(session=session, job_id=done.id, images=[])
    assert await repo.count_active_jobs(session=session, user_id=user.id) == repo.ActiveJobs(
        queued=3, running=1
    )


async def test_reconciler_sees_old_queued_and_stale_running_jobs(session: AsyncSession, user: User) -> None:
    old = (await _create(session, user)).job
    fresh = (await _create(session, user)).job
    exhausted = (await _create(session, user)).job
    stuck = await _running(session, user)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await session.execute(
        text("UPDATE jobs SET queued_at = :t WHERE id IN (:a, :b)"),
        {"t": hour_ago, "a": old.id, "b": exhausted.id},
    )
    await session.execute(
        text("UPDATE jobs SET attempts = :n WHERE id = :id"), {"n": MAX_ATTEMPTS, "id": exhausted.id}
    )
    await session.execute(
        text("UPDATE jobs SET started_at = :t WHERE id = :id"), {"t": hour_ago, "id": stuck.id}
    )
    mine = {old.id, fresh.id, exhausted.id, stuck.id}

    republish = await repo.queued_jobs_to_republish(session=session, older_than=timedelta(minutes=5))
    assert [j.id for j in republish if j.id in mine] == [old.id]
    stale = await repo.stale_running_jobs(session=session, older_than=timedelta(minutes=5))
    assert [j.id for j in stale if j.id in mine] == [stuck.id]


async def test_a_queued_jobs_grace_comes_from_its_models_render_time_and_the_jobs_ahead(
    session: AsyncSession, user: User
) -> None:
    model = f"grace-{uuid.uuid4().hex[:8]}"
    for _ in range(3):  # finished renders of 20 s
        done = await _running(session, user, model=model)
        await repo.finish_job(session=session, job_id=done.id, images=[])
        await session.execute(
            text(
                "UPDATE jobs SET started_at = finished_at - interval '20 seconds',"
                " queued_at = now() - interval '1 hour' WHERE id = :id"
            ),
            {"id": done.id},
        )
    first, second, third = [(await _create(session, user, model=model)).job for _ in range(3)]
    ago = {first.id: 100, second.id: 99, third.id: 80}
    for job_id, seconds in ago.items():
        await session.execute(
            text("UPDATE jobs SET queued_at = now() - make_interval(secs => :s) WHERE id = :id"),
            {"s": seconds, "id": job_id},
        )

    # grace = 10 s + 1.5 x (ahead + 1) x 20 s: 40 s, 70 s, 100 s.
    overdue = {o.id: o for o in await repo.overdue_queued_jobs(session=session) if o.model == model}
    assert set(overdue) == {first.id, second.id}
    assert overdue[first.id].grace == timedelta(seconds=40) and overdue[second.id].grace == timedelta(seconds=70)

    # A job queued after the third one is rendering already: the third was overtaken.
    later = await _running(session, user, model=model)
    await session.execute(
        text("UPDATE jobs SET queued_at = now() - interval '30 seconds' WHERE id = :id"), {"id": later.id}
    )
    overdue = {o.id: o for o in await repo.overdue_queued_jobs(session=session) if o.model == model}
    assert set(overdue) == {first.id, second.id, third.id}
    assert overdue[third.id].grace == timedelta(seconds=40)


async def test_outbox_rows_are_published_once(session: AsyncSession, user: User) -> None:
    jobs = [(await _create(session, user)).job for _ in range(2)]
    pending = [o for o in await repo.unpublished_outbox(session=session) if o.job_id in {j.id for j in jobs}]
    assert [o.job_id for o in pending] == [j.id for j in jobs]
    assert await repo.mark_outbox_published(session=session, outbox_ids=[pending[0].id]) == 1
    assert await repo.mark_outbox_published(session=session, outbox_ids=[pending[0].id]) == 0
    left = [
        o.job_id for o in await repo.unpublished_outbox(session=session) if o.job_id in {j.id for j in jobs}
    ]
    assert left == [jobs[1].id]


async def test_undelivered_jobs_are_ended_jobs_without_a_result_message(
    session: AsyncSession, user: User
) -> None:
    posted = await _running(session, user)
    await repo.finish_job(session=session, job_id=posted.id, images=[])
    await repo.set_result_message(session=session, job_id=posted.id, channel_id=1, message_id=2)
    missed = await _running(session, user)
    await repo.finish_job(session=session, job_id=missed.id, images=[])
    failed = (await _create(session, user)).job
    await repo.fail_job(session=session, job_id=failed.id, error="boom")
    cancelled = (await _create(session, user)).job
    await repo.cancel_job(session=session, job_id=cancelled.id)
    mine = {posted.id, missed.id, failed.id, cancelled.id}
    # finished_at is the transaction's start time, so a negative age sees this transaction's jobs.
    found = await repo.undelivered_jobs(session=session, older_than=timedelta(seconds=-60))
    assert {j.id for j in found if j.id in mine} == {missed.id, failed.id}
    assert not [
        j for j in await repo.undelivered_jobs(session=session, older_than=timedelta(hours=1)) if j.id in mine
    ]
