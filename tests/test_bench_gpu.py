"""``bench/gpu.py``: its smoke mode runs on the CPU, and its real-size configs build the
published architectures (checked on the meta device: no memory, no GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    return module


def test_the_smoke_run_writes_a_row_per_path_and_architecture(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    seen = {(cells[0].strip(), cells[1].strip()) for cells in rows}
    for arch in ("sd15", "sdxl", "flux"):
        assert {(arch, "plain call, 1 image"), (arch, "plain call, 4 images"), (arch, "worker path, 4 images/job"),
                (arch, "plain loop, 2 jobs one by one"), (arch, "worker, 2 jobs, 1 per call"),
                (arch, "worker, 2 jobs, 2 per call")} <= seen
    for cells in rows:
        assert float(cells[2]) > 0 and float(cells[3]) > 0  # images/s, s/image
        assert float(cells[7]) >= 0  # the denoiser's TFLOP/s was counted
        if cells[1].strip().startswith(("plain loop", "worker, ")):
            assert float(cells[5]) > 0  # compared with the plain loop of the same jobs
    assert "smoke" in out.read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("arch", "denoiser", "millions"),
    [("sd15", "unet", 859.5), ("sdxl", "unet", 2567.5), ("flux", "transformer", 11901.4)],
)
def test_the_real_size_configs_build_the_published_architectures(arch: str, denoiser: str, millions: float) -> None:
    import torch

    pipe, config = _bench().build_real(arch, torch.device("meta"), torch.bfloat16)
    model = getattr(pipe, denoiser)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=1e-3)
    assert next(model.parameters()).dtype is torch.bfloat16
    assert pipe.scheduler.sigmas.dtype is torch.float32  # made outside the bf16 default
    assert config["family"] == arch


def test_an_unknown_architecture_is_refused(tmp_path: Path) -> None:
    assert _bench().main(["--smoke", "--arch", "sd2", "--out", str(tmp_path / "x.md")]) == 2
