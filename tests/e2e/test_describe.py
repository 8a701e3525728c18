"""/describe with a real bot and a real worker: four prompts read from a picture, and the
buttons that imagine one or all of them; Describe under a single image."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import select

from bot.views.actions import custom_id
from core.spec import JobKind
from db.models import Job, JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation
from tests.fake_discord import FakeMessage, InteractionRecord


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (230, 20, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _description(d: Deployment, interaction: InteractionRecord) -> FakeMessage:
    return await d.fake.wait_for(
        lambda: (
            interaction.original
            if interaction.original is not None
            and interaction.original.content.startswith("**Describe**")
            and interaction.original.buttons
            else None
        ),
        timeout=120,
        what=f"the description of {interaction.name}",
    )


async def _imagine_jobs(d: Deployment) -> list[Job]:
    async with d.sessions() as session:
        rows = await session.scalars(select(Job).where(Job.kind == JobKind.IMAGINE).order_by(Job.created_at))
        return list(rows)


async def test_describe_an_upload_then_imagine_one_and_all_of_its_prompts(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 30)
    await d.start_worker()

    # One picture exactly: neither or both is explained before anything is asked of the database.
    both = await d.fake.slash(
        "describe",
        {"link": "https://cdn.example/x.png"},
        attachments={"image": ("a.png", _png((96, 64)))},
        user="alice",
    )
    assert "one picture" in (await _explanation(d, both)).content
    not_a_link = await d.fake.slash("describe", {"link": "a fox --repeat 40"}, user="alice")
    assert "one link to a picture" in (await _explanation(d, not_a_link)).content
    assert await d.balance("alice") == 30

    described = await d.fake.slash(
        "describe", {}, attachments={"image": ("red.png", _png((96, 64)))}, user="alice"
    )
    message = await _description(d, described)
    job = await d.delivered(described)
    assert (job.kind, job.variant, job.status) == (JobKind.DESCRIBE, None, JobStatus.DONE)
    prompts = list(job.prompts or [])
    assert len(prompts) == 4 and all(p.endswith("--ar 3:2") for p in prompts)
    assert [b.label for b in message.buttons] == ["1", "2", "3", "4", "Imagine all"]
    assert all(p.split(" --ar")[0] in message.content for p in prompts)
    assert not message.attachments and job.cost == 1
    assert await d.balance("alice") == 29

    # 2: imagines the second prompt, in the words and with the model that described it.
    second = await d.fake.click(message, custom_id("dp", job.id, 1), user="alice")
    grid = await _result(d, second)
    imagined = await d.delivered(second)
    assert (imagined.kind, imagined.status, imagined.model) == (JobKind.IMAGINE, JobStatus.DONE, job.model)
    assert imagined.prompt == prompts[1].split(" --ar")[0]
    assert imagined.params["aspect_ratio"] == [3, 2]
    assert len(grid.buttons) == 9

    # Imagine all: the four prompts at once, one job each, all charged in one go.
    before = await d.balance("alice")
    every = await d.fake.click(message, custom_id("da", job.id, 0), user="alice")
    await d.fake.wait_for(
        lambda: next((m for m in every.followups if "Queued 4 jobs" in m.content), None),
        what="Imagine all's note",
    )
    jobs = [j for j in await _imagine_jobs(d) if j.id != imagined.id]
    assert sorted(j.prompt for j in jobs) == sorted(p.split(" --ar")[0] for p in prompts)
    assert await d.balance("alice") == before - sum(j.cost for j in jobs)

    # Describe under a single image reads that image (free to anyone's copy of the action).
    pick = await d.fake.click(grid, custom_id("u", imagined.id, 0), user="alice")
    single = await d.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )
    assert "Describe" in [b.label for b in single.buttons]
    again = await d.fake.click(single, custom_id("dsc", imagined.id, 0), user="alice")
    read = await _description(d, again)
    from_image = await d.delivered(again)
    assert (from_image.kind, from_image.variant, from_image.parent_id) == (
        JobKind.DESCRIBE,
        "image",
        imagined.id,
    )
    # The tiny model drew --ar 3:2 at 80x48 (its 64x64 budget in steps of 16): 5:3 is what it reads.
    assert from_image.prompts and all(p.endswith("--ar 5:3") for p in from_image.prompts)
    assert len(read.buttons) == 1 + len(from_image.prompts)
