"""``--stop 10-100``: finish a render part of the way through its steps.

At the stop, the sampler's own estimate of the finished image (its prediction of the clean
latents, x0) replaces the latents, the remaining steps are skipped (the pipeline's
``interrupt``), and that estimate is decoded: a rougher, less finished picture the earlier
the stop (its layout and colours are settled early; edges and flat areas last), the
diffusion counterpart of Midjourney's ``--stop``. The estimate comes from the scheduler:

- ``pred_original_sample`` (or ``denoised``) of its step output: Euler, Euler a, Heun, LMS,
  DPM2, DDIM, LCM...;
- its last converted model output where that is x0: DPM-Solver++ (multistep and single-step,
  SDE variants included) and UniPC;
- ``sample - sigma * velocity`` for flow-matching schedulers (SD 3.5, FLUX, Z-Image, Qwen-Image).

A scheduler that exposes none of these cannot stop early: the job is rejected (and
refunded) with a message naming the sampler.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gpu_worker.failures import JobRejected


def stopping_scheduler(scheduler: Any, stop: int) -> Any:
    """A scheduler of the same class and config whose ``step`` stops at ``stop`` per cent of
    the run (see the module docstring); ``stopped`` says when it has."""
    base = type(scheduler)
    if not _can_stop(scheduler):
        raise JobRejected(
            f"the sampler {base.__name__} gives no estimate of the finished image, so --stop cannot apply; "
            "choose another --sampler (Euler, DPM++ 2M...)"
        )

    class Stopping(base):  # type: ignore[valid-type, misc]
        stop_percent = stop
        stopped: torch.Tensor | None = None
        _calls = 0

        def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
            out = super().step(model_output, timestep, sample, *args, **kwargs)
            if self.stopped is None:
                self._calls += 1
                total = len(self.timesteps)
                if self._calls >= max(1, math.ceil(total * self.stop_percent / 100)) and self._calls < total:
                    self.stopped = _clean_estimate(self, out, model_output, sample)
            if self.stopped is not None:
                return _with_sample(out, self.stopped)
            return out

    Stopping.__name__ = Stopping.__qualname__ = base.__name__
    made = Stopping.from_config(scheduler.config)
    return made


def interrupt_when_stopped(scheduler: Any, inner: Any) -> Any:
    """A ``callback_on_step_end`` that calls ``inner`` (if any) and then skips the remaining
    steps of a pipeline whose scheduler has stopped."""

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        out = inner(pipe, step, timestep, kwargs) if inner is not None else kwargs
        if getattr(scheduler, "stopped", None) is not None:
            pipe._interrupt = True
        return out if out is not None else kwargs

    inputs = getattr(inner, "tensor_inputs", None)
    if inputs:
        callback.tensor_inputs = inputs  # type: ignore[attr-defined]
    return callback


def _can_stop(scheduler: Any) -> bool:
    name = type(scheduler).__name__
    config = scheduler.config
    if name.startswith("FlowMatch"):
        return True
    if name.startswith("DPMSolver"):
        return str(config.get("algorithm_type", "")) in ("dpmsolver++", "sde-dpmsolver++")
    if name.startswith("UniPC"):
        return bool(config.get("predict_x0", True))
    return name in _WITH_ESTIMATE


_WITH_ESTIMATE = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "HeunDiscreteScheduler",
        "LMSDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "DDIMScheduler",
        "DDPMScheduler",
        "LCMScheduler",
        "TCDScheduler",
    }
)


def _clean_estimate(
    scheduler: Any, out: Any, model_output: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    if isinstance(out, tuple):
        # ``return_dict=False`` (how pipelines call it): ``(prev_sample, pred_original_sample)``
        # for the schedulers that have an estimate, ``(prev_sample,)`` for the rest.
        if len(out) > 1 and isinstance(out[1], torch.Tensor):
            return out[1]
    else:
        for field in ("pred_original_sample", "denoised"):
            value = getattr(out, field, None)
            if isinstance(value, torch.Tensor):
                return value
    name = type(scheduler).__name__
    if name.startswith("FlowMatch"):
        index = max(0, int(scheduler.step_index) - 1)
        sigma = scheduler.sigmas[index].to(sample.device, sample.dtype)
        return sample - sigma * model_output
    outputs = getattr(scheduler, "model_outputs", None)
    if outputs is not None:
        found = [o for o in outputs if isinstance(o, torch.Tensor)]
        if found:
            return found[-1]
    raise JobRejected(f"the sampler {name} gave no estimate of the finished image at the stop")


def _with_sample(out: Any, sample: torch.Tensor) -> Any:
    if isinstance(out, tuple):
        return (sample, *out[1:])
    out.prev_sample = sample
    return out
