"""``imaginarium parse``: what a user sees on stdout, stderr and in the exit status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import parse_main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = parse_main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_json_shows_size_seed_and_negative() -> None:
    status, out, err = run("a cat --ar 16:9 --seed 42 --no dogs, blur", "--json")
    assert (status, err) == (0, "")
    [spec] = json.loads(out)
    assert spec["seed"] == 42
    assert spec["negative_prompt"] == "dogs, blur"
    assert spec["prompt"] == "a cat"
    assert spec["width"] > spec["height"]
    assert abs(spec["width"] / spec["height"] / (16 / 9) - 1) < 0.05


def test_json_is_always_a_list_with_one_entry_per_job() -> None:
    status, out, _ = run("a {red, blue} cat::2 hat", "--json")
    assert status == 0
    specs = json.loads(out)
    assert [s["prompt"] for s in specs] == ["a red cat::2 hat::1", "a blue cat::2 hat::1"]
    assert specs[0]["parts"] == [{"text": "a red cat", "weight": 2.0}, {"text": "hat", "weight": 1.0}]


def test_bad_prompt_exits_2_with_the_message_on_stderr() -> None:
    status, out, err = run("--ar 99:1 x")
    assert status == 2
    assert out == ""
    assert "--ar 99:1: aspect ratio must be between 1:4 and 4:1" in err


def test_summary_is_readable() -> None:
    status, out, _ = run("a cat --ar 2:3 --sampler dpmpp_2m_karras --lora film:0.5")
    assert status == 0
    assert out.splitlines()[0] == "a cat --ar 2:3 --sampler DPM++ 2M Karras --lora film:0.5"
    assert "384x576" in out
    assert "DPM++ 2M Karras" in out
    assert "seed" in out and "random" in out


def test_unquoted_prompt_words_are_joined() -> None:
    status, out, _ = run("a", "cat", "--ar", "16:9", "--json")
    assert status == 0
    assert json.loads(out)[0]["aspect_ratio"] == [16, 9]


def test_budget_and_step_change_the_size() -> None:
    status, out, _ = run("x --ar 16:9", "--budget", "1048576", "--step=64", "--json")
    assert status == 0
    assert (json.loads(out)[0]["width"], json.loads(out)[0]["height"]) == (1344, 768)


def test_double_dash_passes_the_rest_as_prompt() -> None:
    status, out, _ = run("--json", "--", "a", "cat", "--seed", "3")
    assert status == 0
    assert json.loads(out)[0]["seed"] == 3


def test_bad_options_exit_2() -> None:
    assert run("x", "--budget")[0] == 2
    assert run("x", "--budget", "-5")[0] == 2
    assert run("x", "--budget", "100")[0] == 2  # smaller than one 64x64 square
    assert run("x", "--step", "abc")[0] == 2
    status, _, err = run("--json")
    assert status == 2 and "no prompt" in err


def test_help() -> None:
    status, out, _ = run("--help")
    assert status == 0 and "usage: imaginarium parse" in out


def test_installed_command() -> None:
    script = Path(sys.executable).with_name("imaginarium")
    if not script.exists():
        pytest.skip("the project is not installed next to this Python")
    good = subprocess.run([str(script), "parse", "a cat --seed 7", "--json"], capture_output=True, text=True)
    assert good.returncode == 0
    assert json.loads(good.stdout)[0]["seed"] == 7
    bad = subprocess.run([str(script), "parse", "--ar 99:1 x"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--ar 99:1" in bad.stderr
