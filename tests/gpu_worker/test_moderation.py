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


def test_the_session_spins_only_where_scoring_runs_between_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CPU worker (no finisher) scores between renders; a finisher scores beside the next one.
    assert open_detector(SimpleNamespace(finish_behind="off")).between_renders is True  # type: ignore[attr-defined]
    assert open_detector(SimpleNamespace(finish_behind="on")).between_renders is False  # type: ignore[attr-defined]
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    for between, spinning in ((True, "1"), (False, "0")):
        monkeypatch.setattr(moderation, "_NUDENET", None)
        assert NudeNetDetector(between_renders=between).score(image) == 0.0
        options = moderation._NUDENET.onnx_session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == spinning
        # Spinning stops the moment a run returns: nothing is taken from the next render.
        if between:
            assert options.get_session_config_entry("session.force_spinning_stop") == "1"


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


@pytest.mark.parametrize("seed", range(5))
def test_the_vectorised_postprocessing_finds_what_nudenet_finds(seed: int) -> None:
    from nudenet.nudenet import _postprocess

    # A model output with a few hundred candidate rows above NudeNet's 0.2 cut, overlapping
    # boxes of several classes (so that suppression matters), for a padded 300x200 image.
    rng = np.random.default_rng(seed)
    rows = 2100
    output = np.zeros((22, rows), dtype=np.float32)
    output[0] = rng.uniform(0, 320, rows)
    output[1] = rng.uniform(0, 320, rows)
    output[2] = rng.uniform(5, 120, rows)
    output[3] = rng.uniform(5, 120, rows)
    output[4:] = rng.uniform(0, 0.3, (18, rows)) ** 2 * 10 * (rng.uniform(0, 1, (1, rows)) > 0.8)
    width, height, x_pad, y_pad = 300, 200, 0, 100

    ours = moderation.postprocess(output, width=width, height=height, x_pad=x_pad, y_pad=y_pad)
    theirs = _postprocess([output[None]], x_pad, y_pad, 1.0, 1.5, width, height, 320, 320)

    assert len(theirs) > 5
    assert [(d["class"], d["box"]) for d in ours] == [(d["class"], d["box"]) for d in theirs]
    assert [d["score"] for d in ours] == pytest.approx([d["score"] for d in theirs])


def test_a_batch_scores_as_its_images_one_by_one() -> None:
    from nudenet.nudenet import _read_image

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in ((64, 64), (96, 48), (40, 80))]
    detector = NudeNetDetector()
    package = moderation._nudenet()
    for image in images:
        blob = _read_image(np.asarray(image.convert("RGBA")), 320)
        raw = package.onnx_session.run(None, {package.input_name: blob[0]})[0][0]
        alone = moderation.postprocess(raw, width=image.width, height=image.height, x_pad=blob[3], y_pad=blob[4])
        assert detector.score(image) == moderation.score_detections(alone)
    assert detector(images) == pytest.approx([detector.score(im) for im in images], abs=1e-6)
