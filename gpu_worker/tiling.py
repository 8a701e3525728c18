"""``--tile``: seamless textures by circular padding in the UNet's and the VAE's convolutions.

With circular padding a convolution at the left edge sees the right edge as its neighbour
(and the top sees the bottom), so the network paints a picture with no border: copies laid
side by side join without a seam. The switch is made on the cached pipeline in place and
undone when the job ends, which is safe because a worker process renders one job at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


def _convolutions(pipe: Any) -> Iterator[nn.Conv2d]:
    for name in ("unet", "transformer", "vae", "controlnet"):
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    yield layer


@contextmanager
def seamless(pipe: Any, enabled: bool = True) -> Iterator[Any]:
    """Make every 2-D convolution of ``pipe``'s UNet and VAE wrap around, for one job.

    Convolutions without padding (1x1 projections) are unaffected either way. On exit,
    even after an exception, every layer gets back its own padding mode.

    Args:
        pipe: a loaded pipeline (any pipeline sharing its components, e.g. an inpainting
            pipeline made with ``from_pipe``, is affected as well: they share the layers).
        enabled: False makes this a no-op, so callers can write
            ``with seamless(pipe, spec.tile):``.

    Yields:
        ``pipe`` itself.
    """
    if not enabled:
        yield pipe
        return
    saved: list[tuple[nn.Conv2d, Any]] = []
    try:
        for conv in _convolutions(pipe):
            saved.append((conv, conv.padding_mode))
            conv.padding_mode = "circular"
        yield pipe
    finally:
        for conv, mode in saved:
            conv.padding_mode = mode
