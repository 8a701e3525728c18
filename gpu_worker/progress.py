"""Throttled progress events with a cheap preview, from diffusers' step-end callback.

Discord rate-limits message edits, so a job reports at most one event per ``min_interval``
seconds (and always its last step). The preview is not a VAE decode: each latent pixel is
mapped to RGB by a fixed linear projection fitted per latent space (the factors ComfyUI and
others use for their "latent2rgb" previews), which costs a matrix product on a tensor the
sampler already holds. A model configured with a tiny autoencoder (``preview_vae``: TAESD,
TAEF1...) gets real decoded previews instead (:func:`attach_preview_decoder`), for a few
milliseconds more per report on a GPU.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from gpu_worker.families import ADAPTERS, LatentPreview, adapter_of

log = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 128
"""The preview's longest side in pixels."""

LATENT_RGB: dict[str, LatentPreview] = {a.preview.key: a.preview for a in ADAPTERS if a.preview is not None}
"""Latent -> RGB projection per latent space, from the family adapters (``gpu_worker/families``)."""


_DECODERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def attach_preview_decoder(vae: Any, decoder: Any) -> None:
    """Decode the previews of every pipeline built on ``vae`` with ``decoder`` (a diffusers
    ``AutoencoderTiny``). Keyed by the VAE module, which a model's img2img and inpainting
    pipelines share with its text-to-image one; it goes when the VAE does."""
    _DECODERS[vae] = decoder


def preview_decoder(pipe: Any) -> Any | None:
    """The tiny autoencoder attached to ``pipe``'s VAE, if any."""
    vae = getattr(pipe, "vae", None)
    return _DECODERS.get(vae) if vae is not None else None


def decode_preview(
    latents: torch.Tensor,
    decoder: Any,
    *,
    max_side: int = PREVIEW_MAX_SIDE,
    image_size: tuple[int, int] | None = None,
    vae_scale_factor: int = 8,
) -> Image.Image | None:
    """A contact sheet of the batch decoded by a tiny autoencoder (None for unknown layouts).

    Latents are unscaled as the pipeline would unscale them for its own VAE, with the tiny
    autoencoder's ``scaling_factor`` and ``shift_factor`` (1 and 0 for TAESD, whose input is
    the sampler's latents as they are).
    """
    grid = _unpack(latents.detach(), image_size, vae_scale_factor)
    if grid is None or grid.shape[1] != int(decoder.config.latent_channels):
        return None
    z = grid.to(decoder.dtype) / float(decoder.config.scaling_factor) + float(decoder.config.shift_factor)
    with torch.inference_mode():
        pixels = decoder.decode(z).sample
    rgb = ((pixels.float() + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8)
    return _sheet(rgb.permute(0, 2, 3, 1).cpu().numpy(), max_side)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """How far a job is: ``step`` of ``total`` denoising steps done, and a small preview.

    ``preview`` is None when no preview could be made (an unknown latent space) or when
    previews are switched off.
    """

    step: int
    total: int
    preview: Image.Image | None = None

    @property
    def percent(self) -> int:
        """Progress in whole percent (0-100)."""
        return 100 if self.total <= 0 else min(100, round(100 * self.step / self.total))


def latent_family(pipe: Any) -> str | None:
    """The :data:`LATENT_RGB` key for ``pipe``'s latents, or None if its family has none."""
    found = adapter_of(pipe)
    return found.preview.key if found is not None and found.preview is not None else None


def _unpack(latents: torch.Tensor, image_size: tuple[int, int] | None, scale: int) -> torch.Tensor | None:
    """FLUX keeps latents as (batch, tokens, channels * 2 * 2); turn them back into a grid."""
    if latents.ndim == 4:
        return latents
    if latents.ndim != 3 or image_size is None:
        return None
    batch, _, packed = latents.shape
    width, height = image_size
    h, w = 2 * (height // (scale * 2)), 2 * (width // (scale * 2))
    x = latents.view(batch, h // 2, w // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, packed // 4, h, w)


def latents_to_preview(
    latents: torch.Tensor,
    family: str,
    *,
    max_side: int = PREVIEW_MAX_SIDE,
    image_size: tuple[int, int] | None = None,
    vae_scale_factor: int = 8,
) -> Image.Image | None:
    """A rough RGB picture of ``latents`` by the linear projection of ``family``.

    A batch becomes a grid (two columns for 2-4 images, like the result grid), scaled so
    that its longest side is at most ``max_side``.

    Args:
        latents: the sampler's latents, ``(batch, channels, h, w)``, or FLUX's packed
            ``(batch, tokens, 64)`` together with ``image_size``.
        family: a key of :data:`LATENT_RGB`.
        max_side: the preview's longest side in pixels.
        image_size: ``(width, height)`` of the render, needed only for packed latents.
        vae_scale_factor: image pixels per latent pixel, needed only for packed latents.

    Returns:
        An RGB image, or None if the latents do not fit the family's projection.
    """
    preview = LATENT_RGB[family]
    factors, bias = preview.factors, preview.bias
    grid = _unpack(latents.detach(), image_size, vae_scale_factor)
    if grid is None or grid.shape[1] != len(factors):
        return None
    proj = torch.tensor(factors, dtype=torch.float32, device=grid.device)
    rgb = torch.einsum("bchw,cr->bhwr", grid.float(), proj) + torch.tensor(bias, device=grid.device)
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return _sheet(pixels, max_side)


def _sheet(pixels: np.ndarray, max_side: int) -> Image.Image:
    """Up to two images per row, scaled so that the longer side is ``max_side``."""
    batch, h, w, _ = pixels.shape
    cols = 1 if batch == 1 else 2
    rows = math.ceil(batch / cols)
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i in range(batch):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = pixels[i]
    image = Image.fromarray(sheet, "RGB")
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class ThrottledProgress:
    """A ``callback_on_step_end`` that reports at most one :class:`ProgressEvent` per interval.

    The first step and the final step are always reported; in between, a step is reported
    only if ``min_interval`` seconds passed since the last report. One instance serves one
    job. ``emit`` runs inside the denoising loop, so it should be quick (e.g. put the event
    on a queue); an exception in it is logged and does not fail the render.

    Example:
        ``pipe(..., callback_on_step_end=ThrottledProgress(send).callback)``

    Args:
        emit: called with each event that passes the throttle.
        min_interval: seconds between two reports.
        clock: a monotonic clock in seconds (injectable for tests).
        total: the number of steps; by default the pipeline's ``num_timesteps`` (which
            img2img and inpainting already reduce by their strength).
        previews: whether to attach a preview to events.
        image_size: ``(width, height)`` of the render; FLUX's packed latents need it.
    """

    def __init__(
        self,
        emit: Callable[[ProgressEvent], None],
        *,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        total: int | None = None,
        previews: bool = True,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        self.emit = emit
        self.min_interval = min_interval
        self.clock = clock
        self.total = total
        self.previews = previews
        self.image_size = image_size
        self._last_time: float | None = None
        self._last_step = 0

    def callback(
        self, pipe: Any, step_index: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """diffusers' step-end hook: maybe emit an event; return ``callback_kwargs`` unchanged."""
        total = self.total or int(getattr(pipe, "num_timesteps", 0) or 0)
        step = step_index + 1
        final = total > 0 and step >= total
        now = self.clock()
        due = self._last_time is None or now - self._last_time >= self.min_interval
        if step > self._last_step and (final or due):
            self._last_time, self._last_step = now, step
            preview = self._preview(pipe, callback_kwargs.get("latents")) if self.previews else None
            try:
                self.emit(ProgressEvent(step=step, total=max(total, step), preview=preview))
            except Exception:  # progress is best effort; the images matter more
                log.warning("progress report failed at step %d", step, exc_info=True)
        return callback_kwargs

    def _preview(self, pipe: Any, latents: Any) -> Image.Image | None:
        if not isinstance(latents, torch.Tensor):
            return None
        decoder = preview_decoder(pipe)
        family = latent_family(pipe)
        if decoder is None and family is None:
            return None
        try:
            if decoder is not None:
                return decode_preview(
                    latents,
                    decoder,
                    image_size=self.image_size,
                    vae_scale_factor=int(getattr(pipe, "vae_scale_factor", 8)),
                )
            assert family is not None
            return latents_to_preview(
                latents,
                family,
                image_size=self.image_size,
                vae_scale_factor=int(getattr(pipe, "vae_scale_factor", 8)),
            )
        except Exception:  # a preview must never fail a job
            log.warning("latent preview failed", exc_info=True)
            return None
