"""``--tile``: renders that wrap around, and pipelines left as they were."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gpu_worker.tiling import seamless
from tests.gpu_worker.conftest import TINY_SIZE


def _render(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    return np.asarray(
        pipe(
            "a red fox",
            num_inference_steps=2,
            height=TINY_SIZE,
            width=TINY_SIZE,
            guidance_scale=1.0,
            latents=latents.clone(),
            output_type="np",
        ).images[0]
    )


def _wrap_error(pipe: Any, tile: bool) -> float:
    """How far a render is from living on a torus.

    Shifting the starting noise circularly (by a multiple of the networks' downsampling)
    must shift the picture the same way when every layer wraps around: then the right
    edge continues into the left edge exactly as any two neighbouring columns inside the
    picture do. The mean absolute difference between "render, then roll" and "roll, then
    render" is that property, measured.
    """
    latent = TINY_SIZE // pipe.vae_scale_factor
    noise = torch.randn(1, 4, latent, latent, generator=torch.Generator().manual_seed(7))
    shift = (4, 6)  # latent pixels; multiples of the UNet's 2x downsampling
    with seamless(pipe, tile):
        plain = _render(pipe, noise)
        shifted = _render(pipe, torch.roll(noise, shifts=shift, dims=(2, 3)))
    rolled = np.roll(plain, shift=tuple(s * pipe.vae_scale_factor for s in shift), axis=(0, 1))
    return float(np.abs(rolled - shifted).mean())


def test_tiled_render_wraps_around_and_plain_does_not(tiny_sd15: Any) -> None:
    tiled, plain = _wrap_error(tiny_sd15, True), _wrap_error(tiny_sd15, False)

    assert tiled < 1e-4
    assert plain > 100 * tiled and plain > 0.01


def _modes(pipe: Any) -> list[str]:
    return [
        m.padding_mode for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, nn.Conv2d)
    ]


def test_layers_are_restored_after_the_job_even_on_error(tiny_sd15: Any) -> None:
    before = _modes(tiny_sd15)

    with pytest.raises(RuntimeError), seamless(tiny_sd15):
        assert set(_modes(tiny_sd15)) == {"circular"}
        raise RuntimeError("render failed")

    assert _modes(tiny_sd15) == before
    with seamless(tiny_sd15, enabled=False):
        assert _modes(tiny_sd15) == before
