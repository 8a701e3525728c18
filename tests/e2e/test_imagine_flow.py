"""The main path, with a real bot process and a real worker: imagine, pick, upscale, restart, vary."""

from __future__ import annotations

from bot.views.actions import custom_id
from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.fake_discord import FakeMessage, InteractionRecord


async def _result(d: Deployment, interaction: InteractionRecord, timeout: float = 120) -> FakeMessage:
    """The interaction's message once it carries an image and buttons (the delivered result)."""
    return await d.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original is not None
            and interaction.original.attachments
            and interaction.original.buttons
            and not interaction.original.content.startswith("Rendering")
            and "step" not in interaction.original.content
            else None
        ),
        timeout=timeout,
        what=f"the result of {interaction.name}",
    )


async def test_imagine_pick_upscale_then_restart_and_vary(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 20)
    await d.start_worker()

    imagine = await d.fake.slash("imagine", {"prompt": "a red fox in the snow --steps 8"}, user="alice")

    response = await imagine.wait_for_response()
    assert response.type == 5 and imagine.ack_latency is not None and imagine.ack_latency < 0.5
    grid = await _result(d, imagine)
    versions = [*grid.history, grid.snapshot()]
    assert any("queued" in v["content"] for v in versions), "the acknowledgement showed the queue position"
    assert any("step" in v["content"] for v in versions), "a progress edit came before the result"
    assert len(grid.buttons) == 9
    assert [b.label for b in grid.buttons if b.label] == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    first = await d.delivered(imagine)
    assert first.status == JobStatus.DONE and first.result_message_id == grid.id
    assert await d.balance("alice") == 20 - first.cost

    pick = await d.fake.click(grid, custom_id("u", first.id, 1), user="alice")
    single = await d.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )
    assert "Image #2" in single.content
    assert "Upscale (Subtle)" in [b.label for b in single.buttons]
    picked = single.attachments[0]

    upscale = await d.fake.click(single, custom_id("ups", first.id, 1), user="alice")
    upscaled = await _result(d, upscale)
    image = upscaled.attachments[0]
    assert picked.width and image.width == 2 * picked.width and image.height == 2 * (picked.height or 0)
    assert "Upscale (Subtle)" in [b.label for b in upscaled.buttons]  # a single image's buttons again
    upscale_job = await d.job_of(upscale)
    assert (upscale_job.kind, upscale_job.parent_id, upscale_job.parent_index) == (
        JobKind.UPSCALE,
        first.id,
        1,
    )

    await d.restart_bot()

    vary = await d.fake.click(grid, custom_id("v", first.id, 2), user="alice")
    varied = await _result(d, vary)
    assert len(varied.buttons) == 9
    variation = await d.delivered(vary)
    assert (variation.kind, variation.parent_id, variation.parent_index) == (JobKind.VARIATION, first.id, 2)
    assert variation.status == JobStatus.DONE
    created = [e.message_id for e in d.fake.message_events if e.kind == "create"]
    assert len(created) == len(set(created))
