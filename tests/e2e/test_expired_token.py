"""A job that ends after its interaction token expired (or was revoked) is posted as a channel message."""

from __future__ import annotations

import asyncio

from db.models import JobStatus
from tests.e2e.conftest import Deployment


async def test_a_result_after_the_token_expired_is_a_channel_reply(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 3)
    imagine = await d.fake.slash("imagine", {"prompt": "a castle on a hill"}, user="alice")
    ack = await d.fake.wait_for(
        lambda: imagine.original if imagine.original and "queued" in imagine.original.content else None
    )
    d.fake.expire(imagine)  # as if the job waited in the queue for 15 minutes

    await d.start_worker()

    reply = await d.fake.wait_for_message(lambda m: bool(m.attachments), timeout=180)
    assert reply.id != ack.id and reply.interaction_id is None
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(ack.id)
    assert f"<@{d.fake.user('alice').id}>" in reply.content
    assert len(reply.buttons) == 9
    job = await d.delivered(imagine)
    assert job.status == JobStatus.DONE and job.result_message_id == reply.id
    assert "queued" in d.fake.messages[ack.id].content  # the dead token could not touch it


async def test_a_token_refused_right_after_the_ack_still_gets_its_result_once(deployment: Deployment) -> None:
    """The "queued" edit fails; the result is a channel reply to the deferral, posted once."""
    d = deployment
    await d.grant("alice", 3)
    d.fake.revoke_tokens_after_ack = True
    imagine = await d.fake.slash("imagine", {"prompt": "a castle on a hill"}, user="alice")
    job = await d.job_of(imagine)
    deferral = imagine.original
    assert deferral is not None and deferral.loading  # nothing could fill it

    await d.start_worker()

    job = await d.delivered(imagine, timeout=180)
    assert job.status == JobStatus.DONE
    posted = [m for m in d.fake.messages.values() if m.attachments and not m.deleted]
    assert [m.id for m in posted] == [job.result_message_id]
    reply = posted[0]
    assert reply.interaction_id is None
    assert reply.message_reference is not None and reply.message_reference["message_id"] == str(deferral.id)
    assert f"<@{d.fake.user('alice').id}>" in reply.content
    assert await d.balance("alice") == 3 - job.cost
    await asyncio.sleep(5)  # two more delivery sweeps
    log = d.bot.log_tail(10**7)
    assert "Traceback" not in log and "sweep retries it" not in log, log[-3000:]
    assert log.count(": 401") <= 3, log[-3000:]  # the queued edit, one progress edit, the webhook: once each
    assert log.count(f"delivered job {job.id}") == 1
    assert len([m for m in d.fake.messages.values() if m.attachments]) == 1
