"""A job that ends after its interaction token expired is posted as a channel message."""

from __future__ import annotations

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
