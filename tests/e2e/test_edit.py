"""/edit with a real bot and a real worker: a member's picture repainted where their mask is
white, every pixel outside it kept; without a mask it is refused before anything is charged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_edit_repaints_only_where_the_mask_is_white(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 10)
    await d.start_worker()
    picture = Image.new("RGB", (96, 64), (30, 70, 225))
    picture.paste((245, 225, 40), (8, 8, 40, 56))
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (48, 0, 96, 64))  # the right half

    unmasked = await d.fake.slash(
        "edit", {"prompt": "a red circle"}, attachments={"image": ("p.png", _png(picture))}, user="alice"
    )
    said = (await _explanation(d, unmasked)).content
    assert "cannot do Edit (Instruction)" in said and "attach a `mask`" in said
    assert await d.balance("alice") == 10

    edited = await d.fake.slash(
        "edit",
        {"prompt": "a red circle"},
        attachments={"image": ("p.png", _png(picture)), "mask": ("m.png", _png(mask))},
        user="alice",
    )
    grid = await _result(d, edited)
    job = await d.delivered(edited)
    assert (job.kind, job.status) == (JobKind.EDIT, JobStatus.DONE)
    assert [u.rsplit("/", 1)[-1] for u in job.params["image_urls"]] == ["p.png", "m.png"]
    assert await d.balance("alice") == 10 - job.cost

    # The tiny model's size for 3:2 is 80x48: the left half (the mask's black) is the picture's.
    with Image.open(io.BytesIO(grid.attachments[0].data)) as opened:
        first = opened.convert("RGB").crop((0, 0, opened.width // 2, opened.height // 2))
    assert first.size == (80, 48)
    kept = np.asarray(picture.resize((80, 48), Image.Resampling.LANCZOS), dtype=np.int16)[:, :36]
    assert np.abs(np.asarray(first, dtype=np.int16)[:, :36] - kept).max() <= 2
    assert (
        np.abs(
            np.asarray(first, dtype=np.int16)[:, 44:] - np.asarray(picture.resize((80, 48)))[:, 44:]
        ).mean()
        > 5
    )


async def test_edit_by_instruction_on_an_editing_model_and_from_an_image(deployment: Deployment) -> None:
    """A FLUX.1 Kontext model (tiny, of the real classes) in models.toml edits by instruction;
    the built-in SD 1.5 model refuses it before charging; Edit… under an image opens the form."""
    from bot.views.actions import custom_id
    from gpu_worker.tiny_model import write_tiny_model

    d = deployment
    folder = write_tiny_model(d.tmp / "kontext", "flux-kontext")
    models = Path(d.env["MODELS_FILE"])
    models.write_text(
        models.read_text()
        + f'\n[models.kontext]\nfamily = "flux-kontext"\npath = "{folder}"\npixel_budget = 1024\n'
        'size_step = 16\nsteps = 2\nsampler = "Euler"\n'
    )
    await d.restart_bot()
    await d.grant("alice", 20)
    await d.start_worker(models=("tiny", "kontext"))
    picture = Image.new("RGB", (48, 32), (30, 70, 225))

    on_sd = await d.fake.slash(
        "edit", {"prompt": "make it night"}, attachments={"image": ("p.png", _png(picture))}, user="alice"
    )
    said = (await _explanation(d, on_sd)).content
    assert "cannot do Edit (Instruction)" in said and "Nothing was charged" in said
    assert await d.balance("alice") == 20

    edited = await d.fake.slash(
        "edit",
        {"prompt": "make it night", "model": "kontext"},
        attachments={"image": ("p.png", _png(picture))},
        user="alice",
    )
    grid = await _result(d, edited)
    job = await d.delivered(edited)
    assert (job.kind, job.variant, job.status, job.model) == (
        JobKind.EDIT,
        "instruction",
        JobStatus.DONE,
        "kontext",
    )
    with Image.open(io.BytesIO(grid.attachments[0].data)) as opened:
        assert "Edit: instruction" in str(opened.info.get("parameters", ""))

    pick = await d.fake.click(grid, custom_id("u", job.id, 1), user="alice")
    single = await d.fake.wait_for(
        lambda: pick.original if pick.original and pick.original.attachments else None
    )
    opened_form = await d.fake.click(single, custom_id("ed", job.id, 1), user="alice")
    await d.fake.wait_for(lambda: opened_form.modal, what="the Edit form")
    again = await d.fake.submit_modal(opened_form, {"prompt": "add a moon"}, user="alice")
    await _result(d, again)
    second = await d.delivered(again)
    assert (second.kind, second.variant, second.parent_id, second.prompt) == (
        JobKind.EDIT,
        "image",
        job.id,
        "add a moon",
    )
    assert second.status == JobStatus.DONE
