"""Control images: what a ControlNet is shown, made from the picture a member gave.

Each ``--cn`` type has a preprocessor that turns a picture into the map its ControlNets were
trained on. The ones that need no weights run here (OpenCV and NumPy):

- ``canny``: white Canny edges on black (thresholds from the picture's median brightness,
  so a dark photo and a flat drawing both give closed outlines);
- ``lineart``: thin white lines on black (Canny edges of a lightly blurred picture);
- ``scribble``: thick white strokes on black (edges dilated to a few pixels);
- ``tile``: the picture itself, softened (tile ControlNets add detail to what they are shown);

``depth`` needs a depth estimator (any ``transformers`` depth-estimation model, from
``models.toml``): :mod:`gpu_worker.control.estimators`. With ``:asis`` the picture is used
as the control map unchanged (a depth map or pose skeleton made elsewhere).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageFilter


def _gray(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _as_rgb(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(mask[..., None], 3, axis=2), "RGB")


def canny(image: Image.Image, *, low: int | None = None, high: int | None = None) -> Image.Image:
    """White Canny edges on black; thresholds 0.66x and 1.33x the median brightness unless given
    (clamped to 20-250 so a flat picture still has its outlines found)."""
    gray = _gray(image)
    median = float(np.median(gray))
    lo = low if low is not None else int(min(max(20, 0.66 * median), 200))
    hi = high if high is not None else int(min(max(lo + 30, 1.33 * median), 250))
    return _as_rgb(cv2.Canny(gray, lo, hi))


def lineart(image: Image.Image) -> Image.Image:
    """Thin white lines on black: edges of the picture after a light blur (fewer texture lines)."""
    softened = image.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(image.size) / 512)))
    return canny(softened)


def scribble(image: Image.Image) -> Image.Image:
    """Thick white strokes on black: edges dilated to about 1 % of the picture's shorter side."""
    edges = np.asarray(lineart(image).convert("L"))
    radius = max(1, round(min(image.size) / 100))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return _as_rgb(cv2.dilate(edges, kernel))


def tile(image: Image.Image) -> Image.Image:
    """The picture softened: shrunk to an eighth and enlarged again (its layout and colours)."""
    rgb = image.convert("RGB")
    small = rgb.resize((max(1, rgb.width // 8), max(1, rgb.height // 8)), Image.Resampling.BOX)
    return small.resize(rgb.size, Image.Resampling.BICUBIC)


WEIGHTLESS = {"canny": canny, "lineart": lineart, "scribble": scribble, "tile": tile}
"""The preprocessors that need no model weights, by ``--cn`` type."""
