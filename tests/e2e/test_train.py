"""/train through the real bot and a real worker on the tiny pipeline: the cost shown before
anything is charged, the training job with its four samples, the LoRA in its owner's
autocomplete only, a render with it; a killed worker's training resumed from its checkpoint,
then cancelled with the unspent share refunded; and the refusals that charge nothing."""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation
from tests.fake_discord import FakeMessage, InteractionRecord


def _png(n: int, size: tuple[int, int] = (64, 64)) -> bytes:
    image = Image.new("RGB", size, (40 * n % 256, 200, 60))
    image.paste((250, 240, 10), (16, 16, 40, 44))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _zip(count: int, *, junk: bool = False, caption: str = "a yellow block number {n}") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n in range(count):
            archive.writestr(f"toy/{n:02d}.png", _png(n))
            archive.writestr(f"toy/{n:02d}.txt", caption.format(n=n))
        if junk:
            archive.writestr("toy/99.png", b"this is not a picture")
    return out.getvalue()


async def _offer(d: Deployment, asked: InteractionRecord) -> FakeMessage:
    return await d.fake.wait_for(
        lambda: next((m for m in asked.followups if m.buttons and not m.deleted), None),
        timeout=60, what="the training offer",
    )


async def test_train_a_lora_then_draw_with_it(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 40)
    await d.grant("bob", 10)
    await d.start_worker()

    asked = await d.fake.slash("train", {"name": "toy", "trigger": "zorbl", "kind": "subject", "steps": 100},
                               attachments={"pictures": ("toy.zip", _zip(6))}, user="alice")
    offer = await _offer(d, asked)
    assert offer.ephemeral and "6 pictures" in offer.content and "**5 credits**" in offer.content
    assert await d.balance("alice") == 40  # shown, not charged
    start = next(b for b in offer.buttons if (b.label or "").startswith("Start training"))
    started = await d.fake.click(offer, start.custom_id, user="alice")
    result = await _result(d, started, timeout=300)
    job = await d.delivered(started)
    assert (job.kind, job.status, job.cost) == (JobKind.TRAIN, JobStatus.DONE, 5)
    assert result.attachments and await d.balance("alice") == 35
    assert "Your LoRA `toy` is ready: add `--lora toy`" in result.content

    for user, seen in (("alice", True), ("bob", False)):
        ac = await d.fake.autocomplete("imagine", {"prompt": "x", "lora": "to"}, focused="lora", user=user)
        await ac.wait_for_response()
        assert any(c["value"] == "toy" for c in ac.choices or []) is seen, (user, ac.choices)

    drawn = await d.fake.slash("imagine", {"prompt": "zorbl on a beach --lora toy"}, user="alice")
    await _result(d, drawn)
    rendered = await d.delivered(drawn)
    assert rendered.status is JobStatus.DONE and rendered.params["loras"][0]["sha256"]
    refused = await d.fake.slash("imagine", {"prompt": "zorbl on a beach --lora toy"}, user="bob")
    assert "no trained LoRA" in (await _explanation(d, refused)).content
    taken = await d.fake.slash("train", {"name": "mine", "trigger": "ZORBL"},
                               attachments={"pictures": ("b.zip", _zip(5))}, user="bob")
    assert "trigger `ZORBL` is already taken" in (await _explanation(d, taken)).content
    assert await d.balance("bob") == 10

    # /lora delete: the file leaves the store and the worker's copy (its reconciler), and 🔄
    # under the image made with it is refused, charging nothing.
    image = await _result(d, drawn)
    gone = await d.fake.slash("lora delete", {"name": "toy"}, user="alice")
    await d.fake.wait_for(
        lambda: gone.original if gone.original is not None and "Deleted `toy`" in gone.original.content else None,
        timeout=30, what="the delete reply",
    )
    key, sha = rendered.params["loras"][0]["storage_key"], rendered.params["loras"][0]["sha256"]
    data = d.tmp / "data"
    stored, copy = data / "images" / key[:2] / key[2:4] / key, data / "trained-loras" / f"{sha}.safetensors"
    assert copy.is_file()  # the worker fetched it for the render above
    await d.fake.wait_for(lambda: not stored.exists() and not copy.exists(), timeout=30, what="the file removed")
    balance = await d.balance("alice")
    reroll = next(b for b in image.buttons if b.emoji_name == "🔄")
    again = await d.fake.click(image, reroll.custom_id, user="alice")
    assert "has been deleted" in (await _explanation(d, again)).content
    assert await d.balance("alice") == balance


async def test_what_train_refuses_charges_nothing(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 40)
    cases = [
        ({"name": "few", "trigger": "qwixx"}, _zip(3), "at least 5 pictures"),
        ({"name": "junk", "trigger": "qwixx"}, _zip(5, junk=True), "is not an image"),
        ({"name": "notzip", "trigger": "qwixx"}, b"hello", "not a zip"),
        ({"name": "word", "trigger": "circle"}, _zip(5), "ordinary word"),
        ({"name": "kid", "trigger": "qwixx", "kind": "face"}, _zip(5, caption="my 8 year old son, photo {n}"),
         "face LoRA of a child"),
    ]
    for options, archive, expected in cases:
        asked = await d.fake.slash("train", options, attachments={"pictures": ("set.zip", archive)}, user="alice")
        assert expected in (await _explanation(d, asked)).content, options
    assert await d.balance("alice") == 40


async def test_a_killed_worker_resumes_the_training_and_cancel_refunds_the_unspent_share(
    deployment: Deployment,
) -> None:
    import asyncio
    import os
    import signal

    from bot.views.actions import custom_id

    d = deployment
    await d.grant("alice", 40)
    worker = await d.start_worker()
    asked = await d.fake.slash("train", {"name": "long", "trigger": "blorv", "steps": 3000},
                               attachments={"pictures": ("set.zip", _zip(5))}, user="alice")
    offer = await _offer(d, asked)
    start = next(b for b in offer.buttons if (b.label or "").startswith("Start training"))
    started = await d.fake.click(offer, start.custom_id, user="alice")
    training = await d.fake.wait_for(
        lambda: started.original if started.original and "Training… step" in started.original.content
        and started.original.buttons else None,
        timeout=120, what="a training progress edit with its cancel button",
    )
    assert "loss" in training.content
    job = await d.job_of(started)
    assert job.cost == 34 and await d.balance("alice") == 40 - 34
    # The worker's pool process dies once a checkpoint is written; the next attempt resumes it.
    checkpoint = d.tmp / "data" / "training" / str(job.id) / "checkpoint.pt"
    await d.fake.wait_for(lambda: checkpoint.is_file() or None, timeout=120, what="a training checkpoint")
    for pid in worker.pool_pids():
        os.kill(pid, signal.SIGKILL)
    await d.fake.wait_for(lambda: "resuming the training" in worker.log_tail(10**6) or None, timeout=120,
                          what="the training resumed from its checkpoint")
    await asyncio.sleep(1)
    training = d.fake.messages[training.id]
    await d.fake.click(training, custom_id("cancel", job.id, 0), user="alice")
    ended = await d.delivered(started, timeout=60)
    assert ended.status is JobStatus.CANCELLED and ended.refunded is not None and ended.attempts == 2
    assert ended.refunded >= 30  # stopped early: all but the steps done comes back
    assert await d.balance("alice") == 40 - 34 + ended.refunded
