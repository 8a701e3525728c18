"""Several ``/imagine`` jobs in one pipeline call (cross-job batching, :mod:`core.batching`).

The jobs share everything that is one value per call (size, steps, guidance, sampler,
LoRAs: their batch keys are equal); each keeps what is one value per image. Each job's
prompt arguments are built exactly as :func:`gpu_worker.ops.imagine.imagine` builds them
for it alone (house style, multi-prompt weights, ``--chaos``, ``--weird``: four rows), then
the rows of all jobs are stacked, and so are their seeds' generators; the images come back
in the same order and are handed out four by four. Jobs whose prompt arguments cannot be
stacked (a long prompt needs more 77-token windows than the others; one job has a negative
prompt where another has none on a text-prompt family) render in a call of their own.

Each job keeps its own step callback (progress and preview of its own rows, its Stop
button): :func:`per_job_callbacks`. A job stopped by its owner stops counting; the call goes
on for the others and the stopped job's images are dropped. When every job of the call is
stopped, the call ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from PIL import Image

from core.models import ModelDefaults
from gpu_worker.ops.common import IMAGES_PER_JOB, RenderSettings, StepCallback, render
from gpu_worker.ops.imagine import imagine_arguments
from gpu_worker.stopping import JobStopped

Rendered = tuple[list[Image.Image], RenderSettings] | JobStopped
"""One job's share of a call: its images and settings, or how far it got before its owner stopped it."""


def stack_prompt_arguments(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The prompt arguments of several jobs as one call's, rows in job order; None when
    they cannot share a call (other keys, tensors of other shapes, other scalar values)."""
    keys = set(parts[0])
    if any(set(p) != keys for p in parts):
        return None
    out: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in parts]
        if all(isinstance(v, torch.Tensor) for v in values):
            if any(v.shape[1:] != values[0].shape[1:] or v.dtype != values[0].dtype for v in values):
                return None
            out[key] = torch.cat(values)
        elif all(isinstance(v, list) for v in values):
            out[key] = [row for v in values for row in v]
        elif any(isinstance(v, torch.Tensor | list) for v in values) or any(v != values[0] for v in values):
            return None
        else:
            out[key] = values[0]
    return out


def _signature(arguments: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be equal for two jobs' arguments to stack (see :func:`stack_prompt_arguments`)."""
    return tuple(
        (key, tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else "list" if isinstance(value, list) else value)
        for key, value in sorted(arguments.items())
    )


def per_job_callbacks(callbacks: Sequence[StepCallback | None], rows: int) -> tuple[StepCallback, dict[int, float]]:
    """One step callback for a call that renders ``len(callbacks)`` jobs of ``rows`` images.

    Each job's callback sees its own rows of every per-image tensor (the latents for its
    preview). A :class:`JobStopped` from one marks that job stopped (the returned dict:
    job index -> share rendered) and it is not called again; when every job has stopped,
    the call ends with :class:`JobStopped`.
    """
    stopped: dict[int, float] = {}
    count = len(callbacks)

    def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        for index, callback in enumerate(callbacks):
            if callback is None or index in stopped:
                continue
            own = {
                key: value[index * rows : (index + 1) * rows]
                if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows * count
                else value
                for key, value in tensors.items()
            }
            try:
                callback(pipe, step, timestep, own)
            except JobStopped as stop:
                stopped[index] = stop.rendered
        if len(stopped) == count:
            raise JobStopped(max(stopped.values()))
        return tensors

    inputs = sorted({name for c in callbacks for name in (getattr(c, "tensor_inputs", None) or ())})
    setattr(on_step, "tensor_inputs", inputs or None)  # noqa: B010
    return on_step, stopped


def imagine_batch(
    pipe: DiffusionPipeline,
    specs: Sequence[Any],
    *,
    defaults: ModelDefaults | None = None,
    callbacks: Sequence[StepCallback | None] | None = None,
    num_images: int = IMAGES_PER_JOB,
) -> list[Rendered]:
    """Render the ``/imagine`` jobs ``specs`` (equal batch keys) in as few calls as their
    prompt arguments allow; one result per spec, in order.

    Raises:
        Exception: whatever the pipeline raised (every job of that call shares the failure).
    """
    callbacks = list(callbacks) if callbacks is not None else [None] * len(specs)
    prepared = [imagine_arguments(pipe, spec, defaults, num_images) for spec in specs]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, (_, _, arguments) in enumerate(prepared):
        groups.setdefault(_signature(arguments), []).append(index)
    results: list[Rendered | None] = [None] * len(specs)
    for members in groups.values():
        stacked = stack_prompt_arguments([prepared[i][2] for i in members])
        assert stacked is not None  # grouped by what decides it
        seeds = [seed for i in members for seed in prepared[i][1]]
        callback, stopped = per_job_callbacks([callbacks[i] for i in members], num_images)
        try:
            images, settings = render(
                pipe, prepared[members[0]][0], defaults=defaults, num_images=num_images * len(members), seeds=seeds,
                prompt_kwargs=stacked, callback_on_step_end=callback,
            )
        except JobStopped:
            for slot, index in enumerate(members):
                results[index] = JobStopped(stopped.get(slot, 0.0))
            continue
        for slot, index in enumerate(members):
            if slot in stopped:
                results[index] = JobStopped(stopped[slot])
                continue
            own = images[slot * num_images : (slot + 1) * num_images]
            results[index] = (own, replace(settings, seeds=tuple(prepared[index][1])))
    return [r for r in results if r is not None]
