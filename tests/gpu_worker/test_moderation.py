"""NSFW scores: NudeNet's detections mapped to one number, and the detector on real pixels."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_worker import moderation
from gpu_worker.moderation import (
    NsfwDetector,
    NudeNetDetector,
    NullDetector,
    open_detector,
    score_detections,
)
from tests.gpu_worker.conftest import TINY_SIZE


def test_only_explicit_classes_count() -> None:
    detections = [
        {"class": "FACE_FEMALE", "score": 0.95, "box": [0, 0, 1, 1]},
        {"class": "FEMALE_BREAST_COVERED", "score": 0.9, "box": [0, 0, 1, 1]},
        {"class": "MALE_BREAST_EXPOSED", "score": 0.88, "box": [0, 0, 1, 1]},
    ]

    assert score_detections(detections) == 0.0
    assert score_detections([*detections, {"class": "BUTTOCKS_EXPOSED", "score": 0.4}]) == 0.4
    assert (
        score_detections(
            [{"class": "FEMALE_GENITALIA_EXPOSED", "score": 0.7}, {"class": "ANUS_EXPOSED", "score": 0.3}]
        )
        == 0.7
    )
    assert score_detections([]) == 0.0


def test_null_detector_scores_zero() -> None:
    images = [Image.new("RGB", (8, 8))] * 3

    assert NullDetector()(images) == [0.0, 0.0, 0.0]
    assert isinstance(NullDetector(), NsfwDetector)


def test_open_detector_from_settings() -> None:
    assert isinstance(open_detector(SimpleNamespace()), NudeNetDetector)
    assert isinstance(open_detector(SimpleNamespace(nsfw_detector="none")), NullDetector)
    with pytest.raises(ValueError, match="unknown NSFW detector"):
        open_detector(SimpleNamespace(nsfw_detector="magic"))


def test_nudenet_scores_generated_and_plain_images_low(tiny_sd15: Any) -> None:
    generated = tiny_sd15(
        "a red fox in the snow",
        num_inference_steps=2,
        height=TINY_SIZE,
        width=TINY_SIZE,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8), "RGB")
    landscape = Image.new("RGB", (512, 384), (40, 120, 200))
    detector = NudeNetDetector()

    scores = detector([generated, noise, landscape.convert("L"), landscape.convert("RGBA")])

    assert len(scores) == 4
    assert all(0.0 <= s < 0.2 for s in scores)
    # Loaded once per process: every detector shares one ONNX session.
    loaded = moderation._NUDENET
    assert loaded is not None
    NudeNetDetector().score(landscape)
    assert moderation._NUDENET is loaded
