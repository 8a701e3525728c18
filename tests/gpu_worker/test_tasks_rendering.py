"""The render step of the task (gpu_worker.rendering) on tiny pipelines of the real classes.

A job goes in as the service claims it; PNGs carrying their parameters come out in a store,
with a grid for four-image jobs. The store here is a dict (the file stores have tests of
their own); the pipeline cache loads the real tiny SD 1.5 pipeline.
"""

from __future__ import annotations

import base64
import dataclasses
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

from core.models import ModelEntry
from core.models_file import load_catalog
from core.spec import JobKind, JobSpec, Lane, LoraRef, PromptPart
from core.tasks import progress_channel
from gpu_worker.cache import PipelineCache
from gpu_worker.failures import JobRejected
from gpu_worker.images import parse_parameters, read_parameters
from gpu_worker.records import ClaimedJob
from gpu_worker.redis_progress import RedisProgress
from gpu_worker.rendering import JobRenderer
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
        (_job(JobKind.UPSCALE, variant="subtle", source_keys=("gone.png",)), "no longer stored"),
        (_job(JobKind.UPSCALE), "unknown upscale variant None; known: subtle, creative"),
    ],
    ids=["unknown-model", "unknown-lora", "no-source", "source-gone", "no-variant"],
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


@pytest.mark.parametrize(
    ("kind", "variant", "size", "setting"),
    [
        (JobKind.ZOOM, "2", (TINY_SIZE, TINY_SIZE), ("Zoom out", "2")),
        (JobKind.ZOOM, "1.5", (TINY_SIZE, TINY_SIZE), ("Zoom out", "1.5")),
        (JobKind.PAN, "left", (TINY_SIZE + TINY_SIZE // 2, TINY_SIZE), ("Pan", "left")),
        (JobKind.PAN, "down", (TINY_SIZE, TINY_SIZE + TINY_SIZE // 2), ("Pan", "down")),
        (JobKind.REGION, "center", (TINY_SIZE, TINY_SIZE), ("Region", "center")),
        (JobKind.REGION, "left", (TINY_SIZE, TINY_SIZE), ("Region", "left")),
    ],
    ids=["zoom-2", "zoom-1.5", "pan-left", "pan-down", "region-center", "region-left"],
)
def test_inpainting_jobs_render_from_their_source(
    renderer: JobRenderer, kind: JobKind, variant: str, size: tuple[int, int], setting: tuple[str, str]
) -> None:
    source_image = renderer(_job()).images[0]
    source = Image.open(io.BytesIO(renderer.store.get(source_image.storage_key))).convert("RGB")

    result = renderer(_job(kind, variant=variant, source_keys=(source_image.storage_key,)))

    assert len(result.images) == 4 and result.grid_storage_key is not None
    assert all((img.width, img.height) == size for img in result.images)
    data = renderer.store.get(result.images[0].storage_key)
    params = parse_parameters(read_parameters(data) or "")
    assert params.settings[setting[0]] == setting[1]
    if kind is JobKind.REGION:
        # Outside the region every pixel is the source's.
        from core.kinds import recipe

        out = Image.open(io.BytesIO(data)).convert("RGB")
        box = recipe(kind, variant).arg
        assert isinstance(box, tuple)
        left, top, right, bottom = box
        keep = Image.new("L", source.size, 255)
        keep.paste(0, (round(left * size[0]), round(top * size[1]), round(right * size[0]), round(bottom * size[1])))
        black = Image.new("RGB", source.size)
        assert Image.composite(out, black, keep).tobytes() == Image.composite(source, black, keep).tobytes()
        assert out.tobytes() != source.tobytes()


def test_make_square_extends_the_short_side(renderer: JobRenderer) -> None:
    wide = renderer(_job(width=2 * TINY_SIZE, height=TINY_SIZE)).images[0]
    assert (wide.width, wide.height) == (2 * TINY_SIZE, TINY_SIZE)

    result = renderer(_job(JobKind.ZOOM, variant="square", source_keys=(wide.storage_key,)))

    assert {(img.width, img.height) for img in result.images} == {(2 * TINY_SIZE, 2 * TINY_SIZE)}


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (_job(JobKind.ZOOM, variant="7"), "unknown zoom variant '7'; known: 2, 1.5, 1.1, 1.15, "),
        (_job(JobKind.PAN, variant="sideways"), "unknown pan variant 'sideways'; known: left, right, up, down"),
        (_job(JobKind.REGION, variant="corner"), "unknown region variant 'corner'; known: left, right, top"),
    ],
    ids=["zoom", "pan", "region"],
)
def test_inpainting_jobs_with_unknown_variants_are_rejected(
    renderer: JobRenderer, job: ClaimedJob, message: str
) -> None:
    source = renderer(_job()).images[0].storage_key
    with pytest.raises(JobRejected, match=message):
        renderer(_with_source(job, source))


def _with_source(job: ClaimedJob, key: str) -> ClaimedJob:
    return dataclasses.replace(job, source_keys=(key,))


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_blend_and_image_prompts_render_from_the_fetched_images(renderer: JobRenderer) -> None:
    fetched: list[str] = []
    pictures = {"https://cdn.example/a.png": _solid((250, 0, 0)), "https://cdn.example/b.png": _solid((0, 0, 250))}

    def fetch(url: str) -> Image.Image:
        fetched.append(url)
        return pictures[url]

    renderer.fetch = fetch
    urls = tuple(pictures)
    blend = renderer(_job(JobKind.BLEND, prompt="", image_urls=urls))
    assert fetched == list(urls) and len(blend.images) == 4 and blend.grid_storage_key is not None
    params = parse_parameters(read_parameters(renderer.store.get(blend.images[0].storage_key)) or "")
    assert params.settings["Denoising strength"] == "0.8"

    fetched.clear()
    prompted = renderer(_job(image_urls=urls[:1], image_weight=2.0))
    plain = renderer(_job())
    assert fetched == [urls[0]]
    params = parse_parameters(read_parameters(renderer.store.get(prompted.images[0].storage_key)) or "")
    assert params.settings["Denoising strength"] == "0.5"  # --iw 2
    assert {i.sha256 for i in prompted.images}.isdisjoint({i.sha256 for i in plain.images})


def test_unusable_image_links_reject_the_job_and_network_trouble_does_not(renderer: JobRenderer) -> None:
    from gpu_worker.fetch import ImageFetchError, ImageRejected

    def refuse(url: str) -> Image.Image:
        raise ImageRejected("`a.png` could not be downloaded (HTTP 404); it may have been deleted")

    def flaky(url: str) -> Image.Image:
        raise ImageFetchError("`a.png`: connection reset")

    job = _job(JobKind.BLEND, prompt="", image_urls=("https://cdn.example/a.png", "https://cdn.example/b.png"))
    renderer.fetch = refuse
    with pytest.raises(JobRejected, match="HTTP 404"):
        renderer(job)
    renderer.fetch = flaky
    with pytest.raises(ImageFetchError):  # not a rejection: the service tries the job again
        renderer(job)
    renderer.fetch = lambda url: _solid((1, 2, 3))
    with pytest.raises(JobRejected, match="Blend takes 2 to 5 images"):
        renderer(_job(JobKind.BLEND, prompt="", image_urls=("https://cdn.example/a.png",)))


def test_a_link_that_redirects_to_a_metadata_address_rejects_the_job_at_the_hop(renderer: JobRenderer) -> None:
    """The worker's own fetcher (as from settings): the redirect is refused before any request to it,
    as a rejection (the service fails such a job on its first attempt, with a refund)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from core.settings import load_settings
    from gpu_worker.fetch import fetch_image, parse_networks

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/iam/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    settings = load_settings(image_url_hosts="127.0.0.1,169.254.169.254", image_url_private_networks="127.0.0.1")
    hosts, private = settings.allowed_image_hosts(), parse_networks(settings.image_url_private_networks)
    renderer.fetch = lambda url: fetch_image(url, allowed_hosts=hosts, private_networks=private)
    try:
        with pytest.raises(JobRejected, match="points to an address that images cannot be fetched from"):
            renderer(_job(image_urls=(f"http://127.0.0.1:{httpd.server_address[1]}/cat.png",)))
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_explicit_input_image_with_a_minor_in_the_prompt_never_reaches_the_pipeline(
    renderer: JobRenderer,
) -> None:
    urls = ("https://cdn.example/a.png", "https://cdn.example/b.png")  # the detector flags the second
    renderer.fetch = lambda url: _solid((200, 150, 120))
    calls: list[object] = []
    real_job = renderer.pipelines.job

    def watched(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real_job(*args, **kwargs)  # type: ignore[arg-type]

    renderer.pipelines.job = watched  # type: ignore[method-assign]

    with pytest.raises(JobRejected, match="explicit and the prompt refers to a minor"):
        renderer(_job(prompt="a little girl on a bed", image_urls=urls))
    assert calls == []
    assert len(renderer(_job(prompt="a woman on a bed", image_urls=urls)).images) == 4
    assert len(renderer(_job(prompt="a little girl on a bed", image_urls=urls[:1])).images) == 4  # not flagged


def test_tile_renders_a_seamless_job_and_leaves_the_model_as_it_was(renderer: JobRenderer) -> None:
    plain = renderer(_job())
    tiled = renderer(_job(tile=True))
    again = renderer(_job())

    assert {i.sha256 for i in tiled.images}.isdisjoint({i.sha256 for i in plain.images})
    assert [i.sha256 for i in again.images] == [i.sha256 for i in plain.images]
