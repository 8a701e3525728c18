"""``--sref`` and ``--cref`` with a real bot and a real worker: a style and a character
reference (links to pictures) in one prompt. The tiny model has no IP-Adapter, so both work
as image prompts, and the image's recipe says so; a weight without its reference is refused."""

from __future__ import annotations

import io

from PIL import Image

from core.spec import JobKind
from db.models import JobStatus
from tests.e2e.conftest import Deployment
from tests.e2e.test_imagine_flow import _result
from tests.e2e.test_refusals import _explanation


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_style_and_a_character_reference_in_one_prompt(deployment: Deployment) -> None:
    d = deployment
    await d.grant("alice", 10)
    await d.start_worker()
    style = d.fake.attachment("style.png", _png((240, 200, 20)))
    hero = d.fake.attachment("hero.png", _png((20, 20, 20)))

    refused = await d.fake.slash("imagine", {"prompt": "a knight --cw 50"}, user="alice")
    assert "weighs --cref" in (await _explanation(d, refused)).content

    asked = await d.fake.slash(
        "imagine", {"prompt": f"a knight --sref {style.url} --sw 300 --cref {hero.url} --cw 40"}, user="alice"
    )
    grid = await _result(d, asked)
    job = await d.delivered(asked)
    assert (job.kind, job.status) == (JobKind.IMAGINE, JobStatus.DONE)
    assert job.params["style_refs"] == [style.url] and job.params["character_refs"] == [hero.url]
    assert (job.params["style_weight"], job.params["character_weight"]) == (300, 40)
    assert sorted(d.fake.downloads) == ["hero.png", "style.png"]
    with Image.open(io.BytesIO(grid.attachments[0].data)) as opened:
        recipe = str(opened.info.get("parameters", ""))
    assert "Style reference: image prompt (the model has no style adapter)" in recipe
    assert "Character reference: image prompt (the model has no character adapter)" in recipe
    assert await d.balance("alice") == 10 - job.cost


async def test_references_through_ip_adapters_a_model_entry_names(deployment: Deployment) -> None:
    """A models.toml entry (a tiny SD 1.5 folder) with a style and a character IP-Adapter (tiny,
    of the layout diffusers loads): the references condition the render through them."""
    from pathlib import Path

    from gpu_worker.references import write_tiny_ip_adapter
    from gpu_worker.tiny_model import build_tiny_pipeline, write_tiny_model

    d = deployment
    folder = write_tiny_model(d.tmp / "sd15", "sd15")
    adapter_dir, weights, encoder = write_tiny_ip_adapter(build_tiny_pipeline("sd15"), d.tmp / "ip")
    adapter = f'{{ path = "{adapter_dir}", weight_name = "{weights}", image_encoder = "{encoder}" }}'
    models = Path(d.env["MODELS_FILE"])
    models.write_text(
        models.read_text()
        + f'\n[models.adapted]\nfamily = "sd15"\npath = "{folder}"\npixel_budget = 4096\nsize_step = 16\n'
        f'steps = 4\nsampler = "Euler"\nstyle_adapter = {adapter}\ncharacter_adapter = {adapter}\n'
    )
    await d.restart_bot()
    await d.grant("alice", 10)
    await d.start_worker(models=("tiny", "adapted"))
    style = d.fake.attachment("style.png", _png((240, 200, 20)))
    hero = d.fake.attachment("hero.png", _png((20, 20, 20)))

    asked = await d.fake.slash(
        "imagine",
        {"prompt": f"a knight --sref {style.url} --sw 400 --cref {hero.url} --cw 20", "model": "adapted"},
        user="alice",
    )
    grid = await _result(d, asked)
    job = await d.delivered(asked)
    assert (job.status, job.model) == (JobStatus.DONE, "adapted")
    with Image.open(io.BytesIO(grid.attachments[0].data)) as opened:
        recipe = str(opened.info.get("parameters", ""))
    assert "Style reference: IP-Adapter ip-adapter_tiny.safetensors 1.20" in recipe
    assert "Character reference: IP-Adapter ip-adapter_tiny.safetensors 0.42" in recipe
