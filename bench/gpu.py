"""Images per second of real-size architectures on a GPU: plain loop, worker path, compiled, batched.

``python bench/gpu.py [--arch sd15,sdxl,flux] [--out FILE]`` builds SD 1.5 (512x512), SDXL
(1024x1024) and FLUX.1 (1024x1024) pipelines of the real diffusers classes at their real sizes
(configs in ``bench/gpu_configs/``) with random weights in bf16, so nothing is downloaded, and
times, for each:

- **plain call, B images** (B = 1, 4, 8, 16): ``pipe(prompt=[...] * B, ...)``; B = 1 is the
  baseline every ratio is to, B = 4 is a job's grid without the worker, and 8 and 16 are what
  cross-job batching of 2 and 4 jobs would run;
- **worker path, 4 images/job**: :func:`gpu_worker.ops.common.render`, what a worker runs for a
  job (its prompt encoding, sampler, four seeds in one batch);
- **worker path, compiled**: the same after ``compile_repeated_blocks`` on the denoiser
  (regional ``torch.compile``; the compile runs in the warm-up, outside the timing);
- **J queued jobs** (J = 8 by default, each with its own prompt and seeds, 4 images): the
  plain loop renders them one call per job; the worker path with cross-job batching
  (:func:`gpu_worker.ops.batch.imagine_batch`, :mod:`core.batching`) renders K jobs per call
  (K = 1, 2, 4, 8). The column "x plain loop" compares each to the plain loop of the same jobs.

Each row gives images/s, seconds per image, peak GPU memory and the denoiser's achieved
TFLOP/s as a share of the GPU's dense bf16 peak (``torch.utils.flop_counter`` counts one
denoiser call; the share is over the whole call, text encoding and VAE included). The
table goes to ``--out`` (default ``gpu-bench.md``) and to the terminal.

``--smoke`` runs the same code on the CPU with the families' tiny random pipelines (2 steps,
batches 1 and 4, one thread, no compile): the suite runs it so that this file keeps working between
GPU runs. Times from a smoke run mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

CONFIGS = Path(__file__).resolve().parent / "gpu_configs"
ARCHES = ("sd15", "sdxl", "flux")
PROMPT = "a lighthouse on a cliff at sunset, dramatic lighting"

PEAK_BF16_TFLOPS: dict[str, float] = {
    # Dense bf16 tensor-core peaks from the vendors' data sheets (no sparsity).
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "RTX 4090": 165.2,
    "A10": 125.0,
}


@dataclass(frozen=True, slots=True)
class Row:
    """One measured configuration."""

    arch: str
    path: str
    images: int
    seconds: float
    peak_gb: float | None
    tflops: float | None
    share: float | None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=",".join(ARCHES), help="comma-separated: sd15, sdxl, flux")
    parser.add_argument("--smoke", action="store_true", help="tiny pipelines on the CPU (the suite's check)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the family's)")
    parser.add_argument("--batches", default=None, help="images per call for the batched rows (default 1,4,8,16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row, median kept (default 3)")
    parser.add_argument("--jobs", type=int, default=None, help="queued jobs of the batching rows (default 8)")
    parser.add_argument("--per-call", default=None, help="jobs per call of the batching rows (default 1,2,4,8)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled row")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if unlisted")
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.md"), help="where the table goes")
    return parser.parse_args(argv)


# -- pipelines ----------------------------------------------------------------------------------


def build_real(arch: str, device: Any, dtype: Any) -> tuple[Any, dict[str, Any]]:
    """A pipeline of ``arch``'s real classes and sizes with random weights, on ``device``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    from gpu_worker.families import tiny_parts

    config = json.loads((CONFIGS / f"{arch}.json").read_text())
    ids = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # the offline tokenizers' ids
    # Schedulers and tokenizers are made outside the device and dtype below (fp32, on the CPU).
    tokenizer = tiny_parts.tokenizer()
    if arch == "flux":
        scheduler: Any = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True)
    else:
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
        )
    models: dict[str, Any] = {}
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are made in bf16 on the device, never in fp32 first
    try:
        with torch.device(device):
            models["vae"] = AutoencoderKL(**config["vae"])
            models["text_encoder"] = CLIPTextModel(CLIPTextConfig(**config["text_encoder"], **ids))
            if arch == "flux":
                models["text_encoder_2"] = T5EncoderModel(T5Config(**config["text_encoder_2"]))
                models["transformer"] = FluxTransformer2DModel(**config["transformer"])
            else:
                models["unet"] = UNet2DConditionModel(**config["unet"])
            if arch == "sdxl":
                second = CLIPTextConfig(**config["text_encoder_2"], **ids)
                models["text_encoder_2"] = CLIPTextModelWithProjection(second)
    finally:
        torch.set_default_dtype(before)
    if arch == "flux":
        pipe: Any = FluxPipeline(
            scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tiny_parts.t5_tokenizer(), **models
        )
    elif arch == "sdxl":
        pipe = StableDiffusionXLPipeline(scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer, **models)
    else:
        pipe = StableDiffusionPipeline(
            scheduler=scheduler, tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, **models,
        )
    return tiny_parts.inference_mode(pipe), config


def build_smoke(arch: str) -> tuple[Any, dict[str, Any]]:
    """The family's tiny pipeline on the CPU, with the settings a smoke run uses."""
    from gpu_worker.tiny_model import build_tiny_pipeline

    side = 32 if arch == "flux" else 64
    return build_tiny_pipeline(arch), {"family": arch, "size": [side, side], "steps": 2, "cfg": 3.0}


# -- measuring ----------------------------------------------------------------------------------


class DenoiserMeter:
    """Counts the denoiser's calls and keeps the inputs of the last one (for the FLOP count)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.calls = 0
        self.last: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._handle = module.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls += 1
        self.last = (args, kwargs)

    def flops_per_call(self) -> float:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        assert self.last is not None
        args, kwargs = self.last
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            self.module(*args, **kwargs)
        return float(counter.get_total_flops())


def _peak_tflops(args: argparse.Namespace, device: Any) -> float | None:
    import torch

    if args.peak_tflops is not None:
        return float(args.peak_tflops)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def measure(
    arch: str, path: str, images: int, call: Callable[[], Any], meter: DenoiserMeter, *,
    device: Any, repeats: int, peak: float | None,
) -> Row:
    """Warm up once, then time ``call`` ``repeats`` times (median), with memory and FLOPs."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    call()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, calls = [], []
    for _ in range(repeats):
        meter.calls = 0
        started = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - started)
        calls.append(meter.calls)
    seconds = statistics.median(times)
    peak_gb = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    tflops = meter.flops_per_call() * statistics.median(calls) / seconds / 1e12
    share = tflops / peak if peak else None
    return Row(arch, path, images, seconds, peak_gb, tflops, share)


def run_arch(arch: str, args: argparse.Namespace, device: Any, dtype: Any, peak: float | None) -> list[Row]:
    """Every row of one architecture."""
    import torch

    from core.families import FAMILY_DEFAULTS, ModelFamily
    from core.spec import JobSpec, PromptPart
    from gpu_worker.families import adapter
    from gpu_worker.ops.common import render

    pipe, config = build_smoke(arch) if args.smoke else build_real(arch, device, dtype)
    width, height = config["size"]
    steps = args.steps or int(config["steps"])
    cfg = float(config["cfg"])
    batches = [int(b) for b in (args.batches or ("1,4" if args.smoke else "1,4,8,16")).split(",")]
    repeats = 1 if args.smoke else args.repeats
    denoiser = getattr(pipe, adapter(arch).denoiser)
    meter = DenoiserMeter(denoiser)
    defaults = FAMILY_DEFAULTS[ModelFamily(arch)]
    spec = JobSpec(parts=(PromptPart(PROMPT),), width=width, height=height, steps=steps, cfg=cfg, seed=1)

    def plain(n: int) -> Callable[[], Any]:
        return lambda: pipe(
            prompt=[PROMPT] * n, width=width, height=height, num_inference_steps=steps, guidance_scale=cfg,
            generator=[torch.Generator(device="cpu").manual_seed(i) for i in range(n)],
        )

    def worker() -> Any:
        return render(pipe, spec, defaults=defaults, num_images=4)

    rows = [
        measure(arch, f"plain call, {n} image{'s' * (n > 1)}", n, plain(n), meter, device=device, repeats=repeats,
                peak=peak)
        for n in sorted(set(batches) | {1})
    ]
    rows.append(measure(arch, "worker path, 4 images/job", 4, worker, meter, device=device, repeats=repeats, peak=peak))
    rows += queued_jobs(arch, args, pipe, spec, defaults, meter, device=device, repeats=repeats, peak=peak)
    if not args.smoke and not args.no_compile and hasattr(denoiser, "compile_repeated_blocks"):
        denoiser.compile_repeated_blocks(fullgraph=True)
        rows.append(
            measure(arch, "worker path, compiled", 4, worker, meter, device=device, repeats=repeats, peak=peak)
        )
    return rows


def queued_jobs(
    arch: str, args: argparse.Namespace, pipe: Any, spec: Any, defaults: Any, meter: DenoiserMeter, *,
    device: Any, repeats: int, peak: float | None,
) -> list[Row]:
    """The plain loop over J queued jobs, and the worker rendering them K per call."""
    from dataclasses import replace

    import torch

    from core.spec import PromptPart
    from gpu_worker.ops.batch import imagine_batch

    count = args.jobs or (2 if args.smoke else 8)
    per_call = [int(k) for k in (args.per_call or ("1,2" if args.smoke else "1,2,4,8")).split(",") if int(k) <= count]
    specs = [replace(spec, parts=(PromptPart(f"{PROMPT}, view {j}"),), seed=1 + 4 * j) for j in range(count)]

    def plain_loop() -> None:
        for job in specs:
            pipe(prompt=[job.prompt] * 4, width=spec.width, height=spec.height, num_inference_steps=spec.steps,
                 guidance_scale=spec.cfg,
                 generator=[torch.Generator(device="cpu").manual_seed(job.seed + i) for i in range(4)])

    def batched(k: int) -> Callable[[], Any]:
        return lambda: [imagine_batch(pipe, specs[at : at + k], defaults=defaults) for at in range(0, count, k)]

    rows = [measure(arch, f"plain loop, {count} jobs one by one", 4 * count, plain_loop, meter, device=device,
                    repeats=repeats, peak=peak)]
    rows += [
        measure(arch, f"worker, {count} jobs, {k} per call", 4 * count, batched(k), meter, device=device,
                repeats=repeats, peak=peak)
        for k in per_call
    ]
    return rows


# -- report -------------------------------------------------------------------------------------


def table(rows: list[Row], header: str) -> str:
    """The markdown report: a header paragraph, then one line per row (ratios to the plain loop)."""
    lines = [header, "", "| arch | path | images/s | s/image | x 1 image | x plain loop | peak GB | denoiser TFLOP/s "
             "| % of bf16 peak |", "|---|---|---|---|---|---|---|---|---|"]
    base = {r.arch: r.images_per_s for r in rows if r.path == "plain call, 1 image"}
    loop = {r.arch: r.images_per_s for r in rows if r.path.startswith("plain loop")}
    for r in rows:
        peak = f"{r.peak_gb:.1f}" if r.peak_gb is not None else "-"
        share = f"{100 * r.share:.1f} %" if r.share is not None else "-"
        tflops = f"{r.tflops:.2f}" if r.tflops is not None else "-"
        jobs = r.path.startswith(("plain loop", "worker, "))
        against_loop = f"{r.images_per_s / loop[r.arch]:.2f}" if jobs and r.arch in loop else "-"
        lines.append(
            f"| {r.arch} | {r.path} | {r.images_per_s:.3f} | {r.seconds / r.images:.3f} | "
            f"{r.images_per_s / base[r.arch]:.2f} | {against_loop} | {peak} | {tflops} | {share} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write it to ``--out``."""
    args = _args(argv)
    import diffusers
    import torch

    arches = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = sorted(set(arches) - set(ARCHES))
    if unknown:
        print(f"unknown architecture {', '.join(unknown)}; expected some of {', '.join(ARCHES)}")
        return 2
    if args.smoke:
        device, dtype = torch.device("cpu"), torch.float32
        torch.set_num_threads(1)  # a check, not a measurement: never compete for the suite's cores
    elif torch.cuda.is_available():
        device, dtype = torch.device("cuda"), torch.bfloat16
    else:
        print("no GPU here: run with --smoke for the CPU check, or on a machine with a CUDA GPU")
        return 2
    peak = _peak_tflops(args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    rows: list[Row] = []
    for arch in arches:
        rows += run_arch(arch, args, device, dtype, peak)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    header = (
        f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"{'smoke (tiny pipelines, times mean nothing)' if args.smoke else 'bf16, random weights'}; "
        f"bf16 peak {peak if peak else 'unknown'} TFLOP/s."
    )
    report = table(rows, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
