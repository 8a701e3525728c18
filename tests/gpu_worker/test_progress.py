"""Throttled progress events and latent previews."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gpu_worker.progress import ProgressEvent, ThrottledProgress, latents_to_preview
from tests.gpu_worker.conftest import TINY_SIZE


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Config:
    def __init__(self, channels: int) -> None:
        self.latent_channels = channels


class _Vae:
    def __init__(self, channels: int) -> None:
        self.config = _Config(channels)


class FakePipe:
    """What the callback reads from a pipeline: step count and the VAE's latent channels."""

    def __init__(self, total: int, channels: int = 4) -> None:
        self.num_timesteps = total
        self.vae = _Vae(channels)
        self.vae_scale_factor = 8


def _run(progress: ThrottledProgress, clock: FakeClock, steps: int, dt: float) -> None:
    pipe = FakePipe(steps)
    for i in range(steps):
        clock.now = i * dt
        kwargs = {"latents": torch.zeros(1, 4, 8, 8)}
        assert progress.callback(pipe, i, 999 - i, kwargs) is kwargs


def test_emits_first_step_then_once_per_interval_and_always_the_last() -> None:
    events: list[ProgressEvent] = []
    clock = FakeClock()

    _run(ThrottledProgress(events.append, min_interval=2.0, clock=clock), clock, steps=10, dt=0.5)

    assert [(e.step, e.total) for e in events] == [(1, 10), (5, 10), (9, 10), (10, 10)]
    assert events[-1].percent == 100


def test_fast_jobs_report_only_start_and_end() -> None:
    events: list[ProgressEvent] = []
    clock = FakeClock()

    _run(ThrottledProgress(events.append, min_interval=2.0, clock=clock), clock, steps=30, dt=0.01)

    assert [e.step for e in events] == [1, 30]


def test_a_failing_emit_does_not_fail_the_render() -> None:
    def broken(event: ProgressEvent) -> None:
        raise RuntimeError("queue down")

    clock = FakeClock()
    _run(ThrottledProgress(broken, clock=clock), clock, steps=3, dt=5.0)


def test_preview_is_a_small_grid_of_the_batch() -> None:
    latents = torch.randn(4, 4, 128, 96)  # 4 images of 768x1024 px

    preview = latents_to_preview(latents, "sd")

    assert preview is not None
    assert preview.mode == "RGB"
    assert max(preview.size) == 128
    assert preview.size == (96, 128)  # 2x2 grid keeps the 3:4 aspect ratio


def test_preview_colours_follow_the_projection() -> None:
    latents = torch.zeros(1, 4, 8, 8)
    latents[:, 0] = 1.0  # only the first channel: SD maps it to (0.3512, 0.2297, 0.3227)

    preview = latents_to_preview(latents, "sd", max_side=8)

    assert preview is not None
    assert preview.getpixel((4, 4)) == pytest.approx((172, 157, 169), abs=1)
    sdxl = latents_to_preview(torch.zeros(1, 4, 8, 8), "sdxl", max_side=8)
    assert sdxl is not None
    # SDXL's projection has a bias: an all-zero latent is not mid-grey.
    assert sdxl.getpixel((4, 4)) == pytest.approx((141, 125, 127), abs=1)


def test_packed_flux_latents_are_unpacked() -> None:
    packed = torch.randn(1, (64 // 16) * (128 // 16), 64)  # a 128x64 px render

    preview = latents_to_preview(packed, "flux", image_size=(128, 64))

    assert preview is not None
    assert preview.size == (128, 64)
    assert latents_to_preview(packed, "flux") is None  # without the size it cannot unpack


def test_no_preview_for_an_unknown_latent_space() -> None:
    events: list[ProgressEvent] = []
    progress = ThrottledProgress(events.append, clock=FakeClock())

    progress.callback(FakePipe(1, channels=8), 0, 0, {"latents": torch.zeros(1, 8, 4, 4)})

    assert events == [ProgressEvent(step=1, total=1, preview=None)]


def test_real_render_reports_progress_with_previews(tiny_sd15: Any) -> None:
    events: list[ProgressEvent] = []
    progress = ThrottledProgress(events.append, min_interval=0.0)

    tiny_sd15(
        "a red fox",
        num_inference_steps=2,
        height=TINY_SIZE,
        width=TINY_SIZE,
        num_images_per_prompt=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        callback_on_step_end=progress.callback,
    )

    assert [(e.step, e.total) for e in events] == [(1, 2), (2, 2)]
    assert all(e.preview is not None and max(e.preview.size) == 128 for e in events)
