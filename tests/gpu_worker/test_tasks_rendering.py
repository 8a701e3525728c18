"""The render step of the task (gpu_worker.rendering) on tiny pipelines of the real classes.

A job goes in as the service claims it; PNGs carrying their parameters come out in a store,
with a grid for four-image jobs. The store here is a dict (the file stores have tests of
their own); the pipeline cache loads the real tiny SD 1.5 pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelEntry, load_catalog
from core.spec import JobKind, JobSpec, Lane, LoraRef, PromptPart
from core.tasks import progress_channel
from gpu_worker.cache import PipelineCache
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.rendering import JobRenderer, RedisProgress
from gpu_worker.service import ClaimedJob, JobRejected
from gpu_worker.store import StoreKeyError, key_for
from tests.gpu_worker.conftest import TINY_SIZE, TINY_STEPS


class DictStore:
    """Content-addressed bytes in a dict."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put(self, data: bytes, content_type: str = "image/png", *, suffix: str | None = None) -> str:
        key = key_for(data, content_type, suffix=suffix)
        self.files[key] = data
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.files[key]
        except KeyError:
            raise StoreKeyError(key) from None

    def exists(self, key: str) -> bool:
        return key in self.files

    def delete(self, key: str) -> None:
        self.files.pop(key, None)

    def url(self, key: str) -> str:
        return f"memory:{key}"


def _scores(images: Sequence[Image.Image]) -> list[float]:
    # Flags the second image, so the threshold is exercised.
    return [0.9 if i == 1 else 0.1 for i in range(len(images))]


@pytest.fixture
def renderer(tmp_path: Path, tiny_sd15: DiffusionPipeline) -> JobRenderer:
    catalog = load_catalog(None, data_dir=tmp_path)

    def loader(entry: ModelEntry) -> DiffusionPipeline:
        return tiny_sd15

    return JobRenderer(
        catalog=catalog,
        pipelines=PipelineCache(catalog, loader=loader),
        store=DictStore(),
        classify=_scores,
    )


def _job(
    kind: JobKind = JobKind.IMAGINE,
    *,
    prompt: str = "a red fox in the snow",
    variant: str | None = None,
    model: str = "tiny",
    source_keys: tuple[str, ...] = (),
    **spec: object,
) -> ClaimedJob:
    values: dict[str, object] = {
        "parts": (PromptPart(prompt),),
        "width": TINY_SIZE,
        "height": TINY_SIZE,
        "steps": TINY_STEPS,
        "seed": None,
    }
    values.update(spec)
    return ClaimedJob(
        id=uuid.uuid4(),
        kind=kind,
        variant=variant,
        spec=JobSpec(**values),  # type: ignore[arg-type]
        model=model,
        lane=Lane.FAST,
        seed=42,
        attempts=1,
        private=False,
        parent_id=None,
        parent_index=None,
        source_keys=source_keys,
    )


def test_an_imagine_job_stores_four_pngs_with_parameters_and_a_grid(renderer: JobRenderer) -> None:
    result = renderer(_job())

    assert [(img.index, img.seed) for img in result.images] == [(0, 42), (1, 43), (2, 44), (3, 45)]
    store = renderer.store
    for img in result.images:
        data = store.get(img.storage_key)
        assert hashlib.sha256(data).hexdigest() == img.sha256
        assert Image.open(io.BytesIO(data)).size == (TINY_SIZE, TINY_SIZE) == (img.width, img.height)
        params = parse_parameters(read_parameters(data) or "")
        assert params.prompt == "a red fox in the snow"
        assert params.settings["Seed"] == str(img.seed)
        assert params.settings["Model"] == "tiny"
        assert params.settings["Steps"] == str(TINY_STEPS)
    assert [img.nsfw for img in result.images] == [False, True, False, False]
    assert [img.nsfw_score for img in result.images] == [0.1, 0.9, 0.1, 0.1]
    assert len({img.sha256 for img in result.images}) == 4
    assert result.grid_storage_key is not None
    grid = Image.open(io.BytesIO(store.get(result.grid_storage_key)))
    assert grid.size == (2 * TINY_SIZE, 2 * TINY_SIZE)
    # The grid's top-left cell is image 1.
    first = Image.open(io.BytesIO(store.get(result.images[0].storage_key))).convert("RGB")
    assert grid.convert("RGB").crop((0, 0, TINY_SIZE, TINY_SIZE)).tobytes() == first.tobytes()


def test_the_same_job_renders_the_same_bytes(renderer: JobRenderer) -> None:
    job = _job()
    first = renderer(job)
    second = renderer(job)

    assert [i.sha256 for i in first.images] == [i.sha256 for i in second.images]
    assert first.grid_storage_key == second.grid_storage_key


def test_a_job_without_a_seed_in_its_spec_uses_the_seed_of_its_row(renderer: JobRenderer) -> None:
    # The row's seed is the truth (the spec may predate the seed draw).
    result = renderer(_job(seed=None))
    assert result.images[0].seed == 42


def test_a_variation_starts_from_the_source_image(renderer: JobRenderer) -> None:
    source = renderer(_job()).images[0].storage_key

    subtle = renderer(_job(JobKind.VARIATION, variant="subtle", source_keys=(source,)))
    strong = renderer(_job(JobKind.VARIATION, variant="strong", source_keys=(source,)))

    assert len(subtle.images) == 4 and subtle.grid_storage_key is not None
    assert {i.sha256 for i in subtle.images}.isdisjoint({i.sha256 for i in strong.images})
    params = parse_parameters(read_parameters(renderer.store.get(subtle.images[0].storage_key)) or "")
    assert params.settings["Denoising strength"] == "0.35"


def test_an_upscale_doubles_one_image_and_has_no_grid(renderer: JobRenderer) -> None:
    source = renderer(_job()).images[2].storage_key

    result = renderer(_job(JobKind.UPSCALE, variant="subtle", source_keys=(source,)))

    assert len(result.images) == 1
    assert (result.images[0].width, result.images[0].height) == (2 * TINY_SIZE, 2 * TINY_SIZE)
    assert result.grid_storage_key is None


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (_job(model="nope"), "unknown model 'nope'"),
        (_job(loras=(LoraRef("film"),)), "no LoRA 'film'"),
        (_job(JobKind.VARIATION, variant="subtle"), "needs an image to start from"),
        (_job(JobKind.UPSCALE, source_keys=("gone.png",)), "no longer stored"),
    ],
    ids=["unknown-model", "unknown-lora", "no-source", "source-gone"],
)
def test_jobs_that_can_never_render_are_rejected(
    renderer: JobRenderer, job: ClaimedJob, message: str
) -> None:
    with pytest.raises(JobRejected, match=message):
        renderer(job)


def test_progress_is_published_on_the_jobs_redis_channel(renderer: JobRenderer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    job = _job(steps=3)
    pubsub = client.pubsub()
    pubsub.subscribe(progress_channel(str(job.id)))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    renderer.progress = RedisProgress(client, min_interval=0.0)

    renderer(job)

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not events or events[-1]["step"] < 3):
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            events.append(json.loads(message["data"]))
    assert [e["step"] for e in events] == [1, 2, 3]
    assert all(e["job_id"] == str(job.id) and e["total"] == 3 for e in events)
    preview = Image.open(io.BytesIO(base64.b64decode(events[-1]["preview_png_b64"])))
    assert max(preview.size) <= 128
    pubsub.close()
    client.close()
