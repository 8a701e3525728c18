"""Cancel on a job while it renders: the real worker stops at its next step and the
unrendered share of the credits comes back; the message says so."""

from __future__ import annotations

import re

from bot.views.actions import custom_id
from db.models import JobStatus
from tests.e2e.conftest import Deployment


async def test_cancel_stops_a_rendering_job_and_refunds_the_unrendered_share(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 20)
    worker = await d.start_worker(faults=True)

    # fault:slow makes each of the 40 steps take 0.4 s more in this test worker.
    imagine = await d.fake.slash("imagine", {"prompt": "a red fox fault:slow=0.4 --steps 40"}, user="alice")
    rendering = await d.fake.wait_for(
        lambda: imagine.original
        if imagine.original and "Rendering" in imagine.original.content and imagine.original.buttons
        else None,
        timeout=60,
        what="a progress edit with its cancel button",
    )
    job = await d.job_of(imagine)
    assert [b.label for b in rendering.buttons] == ["Cancel"]

    await d.fake.click(rendering, custom_id("cancel", job.id, 0), user="alice")

    stopped = await d.fake.wait_for(
        lambda: d.fake.messages[rendering.id] if "Stopped" in d.fake.messages[rendering.id].content else None,
        timeout=30,
        what="the stopped job's message",
    )
    ended = await d.delivered(imagine)
    assert ended.status == JobStatus.CANCELLED and ended.result_message_id == rendering.id
    found = re.fullmatch(r"stopped by its owner at (\d+)%", ended.error or "")
    assert found is not None and int(found.group(1)) < 50, ended.error  # stopped early, not at the end
    assert ended.refunded is not None and 0 < ended.refunded <= ended.cost
    assert await d.balance("alice") == 20 - ended.cost + ended.refunded
    assert not stopped.attachments and not stopped.buttons
    assert "stopped by its owner" in worker.log_tail()
