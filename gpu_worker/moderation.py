"""NSFW scores for rendered images: one number in [0, 1] per image.

The default detector is NudeNet's (the ONNX model ships inside the ``nudenet`` wheel, so
nothing is downloaded). NudeNet finds body parts with a class and a confidence each; the
image's score is the highest confidence among the *explicit* classes:

- ``FEMALE_BREAST_EXPOSED``, ``FEMALE_GENITALIA_EXPOSED``, ``MALE_GENITALIA_EXPOSED``,
  ``BUTTOCKS_EXPOSED`` and ``ANUS_EXPOSED`` count fully;
- covered body parts, faces, feet, bellies, armpits and ``MALE_BREAST_EXPOSED`` do not count
  (a swimsuit or a bare-chested man is not NSFW).

An image with no explicit detection scores 0. The renderer flags images at or above its
threshold (0.5 by default). The detector is loaded once per process and shared.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

EXPLICIT_CLASSES: frozenset[str] = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
"""NudeNet classes whose confidence becomes the image's NSFW score."""


@runtime_checkable
class NsfwDetector(Protocol):
    """Scores images for sexual content: 0 is safe, 1 is certainly explicit."""

    def score(self, image: Image.Image) -> float:
        """The NSFW score of one image, in [0, 1]."""
        ...

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        """The scores of several images, in order."""
        ...


class NullDetector:
    """Scores every image 0: for servers that moderate otherwise, and for tests."""

    def score(self, image: Image.Image) -> float:
        """Always 0.0."""
        return 0.0

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        """0.0 for each image."""
        return [0.0 for _ in images]


def score_detections(detections: Iterable[dict[str, Any]]) -> float:
    """One NSFW score from NudeNet detections: the top confidence of an explicit class.

    Args:
        detections: NudeNet's ``[{"class": ..., "score": ..., "box": ...}, ...]``.

    Returns:
        A score in [0, 1]; 0.0 when nothing explicit was found.
    """
    best = 0.0
    for det in detections:
        if det.get("class") in EXPLICIT_CLASSES:
            best = max(best, float(det.get("score", 0.0)))
    return min(1.0, max(0.0, best))


_LOCK = threading.Lock()
_NUDENET: Any = None


def _threads() -> int:
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _nudenet(*, spin: bool = False) -> Any:
    """NudeNet's detector, created on first use and shared by the process (thread-safe).

    Its ONNX Runtime session is made again with threads sized for this worker. By default a
    session's threads go on spinning after every run, which took the cores the next render
    needed (the renders of a pool process ran about 16 % slower with NudeNet in it than
    without). With ``spin`` (scoring between renders: a CPU worker) the threads spin between
    the model's operators and stop the moment a run returns
    (``session.force_spinning_stop``): 4 images at 320x320 on 2 cores, 34.5 ms against 40.1
    ms asleep between operators (medians of 25), and no CPU taken after the run. Without it
    (scoring beside the next render: a GPU worker's finisher) they sleep between operators.
    The first caller's choice stands for the process.
    """
    global _NUDENET
    with _LOCK:
        if _NUDENET is None:
            import onnxruntime
            from nudenet import NudeDetector
            from nudenet import nudenet as package

            detector = NudeDetector()
            options = onnxruntime.SessionOptions()
            # On a CPU worker scoring runs between renders (FINISH_BEHIND is off there), so it
            # may use the cores a render may use (the operator's OMP_NUM_THREADS, else all of
            # this process's); on a GPU worker it runs beside the next render, which leaves
            # the cores to it.
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
            if spin:
                options.add_session_config_entry("session.force_spinning_stop", "1")
            path = os.path.join(os.path.dirname(package.__file__), "320n.onnx")
            detector.onnx_session = onnxruntime.InferenceSession(
                path, sess_options=options, providers=["CPUExecutionProvider"]
            )
            _NUDENET = detector
        return _NUDENET


def _labels() -> list[str]:
    from nudenet import nudenet as package

    return list(vars(package)["__labels"])


def postprocess(
    output: np.ndarray, *, width: int, height: int, x_pad: int, y_pad: int, side: int = 320
) -> list[dict[str, Any]]:
    """NudeNet's detections from its model's raw output for one image, vectorised.

    The same rows, box arithmetic and non-maximum suppression as NudeNet's own
    post-processing (a Python loop over the model's 2,100 candidate rows, 5 ms per image),
    in array operations.

    Args:
        output: the model's ``(4 + classes, rows)`` output for one image.
        width, height: the image's size; ``x_pad``, ``y_pad``: the padding that made it square.
        side: the model's input side.
    """
    import cv2

    rows = np.asarray(output, dtype=np.float32).T
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    keep = best >= 0.2
    if not keep.any():
        return []
    rows, best = rows[keep], best[keep]
    class_ids = class_scores[keep].argmax(axis=1)
    cx, cy, w, h = (rows[:, i].astype(np.float64) for i in range(4))
    sx, sy = (width + x_pad) / side, (height + y_pad) / side
    x = np.clip((cx - w / 2) * sx, 0, width)
    y = np.clip((cy - h / 2) * sy, 0, height)
    w = np.minimum(w * sx, width - x)
    h = np.minimum(h * sy, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    indices = cv2.dnn.NMSBoxes(boxes.tolist(), best.tolist(), 0.25, 0.45)
    labels = _labels()
    return [
        {
            "class": labels[int(class_ids[i])],
            "score": float(best[i]),
            "box": [int(v) for v in boxes[i]],
        }
        for i in np.asarray(indices, dtype=np.int64).reshape(-1)
    ]


class NudeNetDetector:
    """NSFW scores from NudeNet's body-part detector (see the module docstring).

    The ONNX session is created lazily on the first image and shared by every instance
    in the process. The images of one call go through the model as one batch, and its
    output is post-processed in array operations (:func:`postprocess`).

    Args:
        between_renders: scoring never runs beside a render in this process (a CPU worker),
            so the session's threads may spin while it runs (:func:`_nudenet`).
    """

    def __init__(self, *, between_renders: bool = False) -> None:
        self.between_renders = between_renders

    def score(self, image: Image.Image) -> float:
        """The NSFW score of ``image`` (any mode; it is converted for the model)."""
        return self([image])[0]

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        """The scores of ``images``, in order."""
        if not images:
            return []
        from nudenet.nudenet import _read_image

        detector = _nudenet(spin=self.between_renders)
        side = int(detector.input_width)
        # NudeNet's reader converts from RGBA to BGR, so an RGBA array is its native input.
        read = [_read_image(np.asarray(im.convert("RGBA")), side) for im in images]
        batch = np.concatenate([r[0] for r in read])
        output = detector.onnx_session.run(None, {detector.input_name: batch})[0]
        return [
            score_detections(
                postprocess(output[i], width=r[5], height=r[6], x_pad=r[3], y_pad=r[4], side=side)
            )
            for i, r in enumerate(read)
        ]


def open_detector(settings: Any = None) -> NsfwDetector:
    """The detector a worker uses: NudeNet unless the settings say ``none``.

    Args:
        settings: read for an optional ``nsfw_detector`` attribute (``"nudenet"``, the
            default, or ``"none"``).

    Raises:
        ValueError: an unknown detector name. A missing ``nudenet`` package is an error
            at the first image, never a silent switch to no moderation.
    """
    name = str(getattr(settings, "nsfw_detector", None) or "nudenet").lower()
    if name == "nudenet":
        from gpu_worker import finishing

        # A finisher scores beside the next render; without one, scoring runs between renders.
        return NudeNetDetector(between_renders=not finishing.wanted(str(getattr(settings, "finish_behind", "auto"))))
    if name == "none":
        log.warning("NSFW detection is off: every image scores 0")
        return NullDetector()
    raise ValueError(f"unknown NSFW detector {name!r}; expected 'nudenet' or 'none'")
