"""ControlNet settings in models.toml and what a job's --cn may ask of a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.controls import (
    ControlConfigError,
    ControlNetEntry,
    control_refusal,
    parse_controlnets,
    parse_estimator,
)
from core.models import builtin_entries


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_controlnets_are_read_by_type_and_checked(tmp_path: Path) -> None:
    _folder(tmp_path / "canny")
    read = parse_controlnets({"canny": "canny"}, tmp_path, "m")
    assert read == (ControlNetEntry("canny", str(tmp_path / "canny")),)
    assert parse_controlnets(None, tmp_path, "m") == ()
    for raw, message in (
        ("canny", "must be a table"),
        ({"sketch": "canny"}, "unknown type 'sketch'"),
        ({"depth": "missing"}, "has no config.json"),
        ({"canny": 3}, "must be a folder path"),
    ):
        with pytest.raises(ControlConfigError, match=message):
            parse_controlnets(raw, tmp_path, "m")
    assert parse_estimator("canny", tmp_path, "m", "depth_estimator") == tmp_path / "canny"
    with pytest.raises(ControlConfigError, match="pose_estimator"):
        parse_estimator("nowhere", tmp_path, "m", "pose_estimator")


def test_builtins_offer_their_controlnets(tmp_path: Path) -> None:
    entries = {e.name: e for e in builtin_entries(tmp_path)}
    assert [c.kind for c in entries["shapes"].controlnets] == ["canny"]
    assert [c.kind for c in entries["tiny"].controlnets] == ["canny", "scribble"]
    assert entries["shapes"].controlnet("canny").builtin


def test_what_a_model_cannot_control_is_said_before_charging() -> None:
    offered = (ControlNetEntry("canny", "/x"), ControlNetEntry("depth", "/y"), ControlNetEntry("pose", "/z"))

    def why(controls: list[tuple[str, bool]], *, family: bool = True, estimator: bool = False) -> str | None:
        return control_refusal(
            model="m",
            family_title="FLUX.1",
            family_has_controlnet=family,
            offered=offered,
            estimators={"depth", "pose"} if estimator else set(),
            controls=controls,
        )

    assert why([]) is None and why([("canny", False)]) is None
    assert "no ControlNet pipelines" in (why([("canny", False)], family=False) or "")
    assert "no `tile` ControlNet (it has: `canny`, `depth`, `pose`)" in (why([("tile", False)]) or "")
    assert "no depth estimator" in (why([("depth", False)]) or "")
    assert why([("depth", False)], estimator=True) is None and why([("depth", True)]) is None
    assert "no pose estimator" in (why([("pose", False)]) or "") and why([("pose", True)]) is None
    assert why([("pose", False)], estimator=True) is None
    one_at_a_time = control_refusal(
        model="q",
        family_title="Qwen-Image",
        family_has_controlnet=True,
        offered=offered,
        estimators={"depth"},
        controls=[("canny", False), ("depth", False)],
        max_controls=1,
    )
    assert "take 1 `--cn` at a time" in (one_at_a_time or "")
