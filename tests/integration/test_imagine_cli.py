"""``imaginarium imagine`` end to end on the embedded defaults: the offline main job.

It starts the embedded Postgres and Redis in a fresh data directory, writes the built-in
model, queues the job, runs a real worker process and writes the files; run again with the
same seed, it writes the same bytes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.model_quality import read_image
from gpu_worker.images import parse_parameters, read_parameters

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.own_broker]

FILES = ["grid.png", "1.png", "2.png", "3.png", "4.png"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp_path: when the tests run as root, the embedded Postgres runs as
    # another user, who cannot enter pytest's 0700 temporary root.
    path = Path(tempfile.mkdtemp(prefix="imaginarium-imagine-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _imagine(prompt: str, out: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "BROKER_URL", "MODELS_FILE"}
    }
    env.update(IMAGINARIUM_DATA_DIR=str(data_dir), OMP_NUM_THREADS="2")
    return subprocess.run(
        [sys.executable, "-m", "imaginarium", "imagine", prompt, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_imagine_writes_the_grid_and_four_images_and_the_same_seed_writes_the_same_files(
    workdir: Path,
) -> None:
    data_dir = workdir / "data"

    first = _imagine("a red circle --ar 3:2 --seed 7", workdir / "one", data_dir)
    assert first.returncode == 0, first.stderr[-4000:]
    second = _imagine("a red circle --ar 3:2 --seed 7", workdir / "two", data_dir)
    assert second.returncode == 0, second.stderr[-4000:]

    assert sorted(p.name for p in (workdir / "one").iterdir()) == sorted(FILES)
    for name in FILES:
        assert (workdir / "one" / name).read_bytes() == (workdir / "two" / name).read_bytes(), name
    images = [Image.open(workdir / "one" / f"{i}.png") for i in range(1, 5)]
    width, height = images[0].size
    assert width > height  # 3:2
    assert all(im.size == (width, height) for im in images)
    assert Image.open(workdir / "one" / "grid.png").size == (2 * width, 2 * height)
    seeds = [parse_parameters(read_parameters(im) or "").settings["Seed"] for im in images]
    assert seeds == ["7", "8", "9", "10"]
    assert parse_parameters(read_parameters(images[0]) or "").prompt == "a red circle"
    assert "wrote grid.png, 1.png, 2.png, 3.png, 4.png" in first.stdout
    # The shipped model drew what the prompt names (read back as bench/model_quality.py does).
    assert [read_image(np.asarray(im.convert("RGB"))).colour for im in images] == ["red"] * 4
    # The embedded servers stopped with the command.
    from db.embedded import EmbeddedPostgres, EmbeddedRedis

    assert not EmbeddedPostgres(data_dir / "postgres").is_running()
    assert not EmbeddedRedis(data_dir / "redis").is_running()


def test_a_bad_prompt_exits_2_with_one_line_and_starts_nothing(workdir: Path) -> None:
    result = _imagine("a red circle --ar 3:2 --seed banana", workdir / "out", workdir / "data")

    assert result.returncode == 2
    assert result.stderr.startswith("imaginarium imagine: bad prompt: --seed")
    assert result.stderr.count("\n") == 1
    assert not (workdir / "out").exists() and not (workdir / "data").exists()


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_main_command() -> str:
    """The prompt of the ``imaginarium imagine`` command in the README's Quick start."""
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = next(line for line in quick_start.splitlines() if "imaginarium imagine" in line)
    words = shlex.split(line.split("imaginarium imagine", 1)[1])
    return words[0]


def test_the_readme_main_command_draws_what_its_prompt_says(workdir: Path) -> None:
    prompt = readme_main_command()
    found = re.fullmatch(r"a (\w+) (\w+) on an? (\w+) background --seed \d+", prompt)
    assert found, prompt
    colour, _shape, background = found.groups()
    result = _imagine(prompt, workdir / "out", workdir / "data")
    assert result.returncode == 0, result.stderr[-4000:]
    readings = [read_image(np.asarray(Image.open(workdir / "out" / f"{i}.png").convert("RGB"))) for i in range(1, 5)]
    assert [(r.background, r.colour) for r in readings] == [(background, colour)] * 4, readings
