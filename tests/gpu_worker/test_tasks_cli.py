"""``imaginarium worker`` and ``imaginarium imagine``: bad input ends in one line and exit status 2.

These run the commands in-process and stop before any server or worker starts; the full
paths run in ``tests/integration``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.models_file import load_catalog
from core.spec import Lane
from gpu_worker.imagine_command import plan_imagine
from imaginarium.cli import main


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings are read once per process; these tests need their own data dir.
    from core.settings import get_settings

    monkeypatch.setenv("IMAGINARIUM_DATA_DIR", str(tmp_path / "data"))
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "MODELS_FILE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["imagine", "a red circle --ar 99:1", "--out", "x"], "bad prompt: --ar 99:1: aspect ratio must be"),
        (["imagine", "--ar 3:2", "--out", "x"], "bad prompt:"),
        (["imagine", "a red circle --model nope", "--out", "x"], "bad prompt: unknown model 'nope'"),
        (["imagine", "a red circle --repeat 3", "--out", "x"], "bad prompt: --repeat"),
        (["imagine", "https://example.com/cat.png a cat", "--out", "x"], "bad prompt: image prompts"),
        (["worker", "--lanes", "fast,turbo"], "--lanes: unknown lane turbo"),
        (["worker", "--models", "nope"], "--models: unknown model 'nope'"),
        (["worker", "--concurrency", "0"], "--concurrency must be at least 1"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    # Nothing was started or written.
    assert not (tmp_path / "data" / "postgres").exists()
    assert not Path("x").exists()


def test_an_output_folder_that_cannot_be_written_is_one_line_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, said in ((blocker, "is not a folder"), (blocker / "sub", "cannot write to")):
        assert main(["imagine", "a red circle", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "data" / "postgres").exists()  # refused before the services start


def test_a_broken_models_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.settings import get_settings

    bad = tmp_path / "models.toml"
    bad.write_text('[models.x]\nfamily = "sd15"\npath = "/nowhere"\n')
    monkeypatch.setenv("MODELS_FILE", str(bad))
    get_settings.cache_clear()

    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1


def test_imagine_sizes_the_prompt_for_the_model_and_prices_it(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)

    request = plan_imagine("a red circle --ar 3:2 --seed 7", catalog)

    assert request.model.name == "shapes"  # the shipped model is the default
    assert request.spec.model == "shapes"
    assert request.spec.seed == 7
    # Sized at the built-in model's budget (64x64, steps of 16), not SD 1.5's 512x512.
    assert (request.spec.width, request.spec.height) == request.model.defaults.size_for((3, 2))
    assert request.spec.width * request.spec.height <= 64 * 64 * 1.05
    assert request.lane is Lane.FAST
    assert request.cost == 1
