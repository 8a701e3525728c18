"""Sampler names (A1111's, as users type them) to fresh diffusers schedulers.

A scheduler keeps per-run state (step index, model outputs of earlier steps), so two jobs
sharing one instance corrupt each other. :func:`make_scheduler` therefore builds a new one
for every job from the cached pipeline's scheduler config, which keeps the model's own
training settings (beta schedule, prediction type, timestep spacing) and changes only the
solver.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from diffusers import (
    DDIMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from core.samplers import canonical_sampler


class UnknownSamplerError(ValueError):
    """A sampler name that no table entry maps, or one the model's family cannot use."""


@dataclass(frozen=True, slots=True)
class SamplerRecipe:
    """How to build one A1111 sampler in diffusers: a scheduler class and config overrides."""

    scheduler: Any
    """A diffusers scheduler class (typed loosely: diffusers' lazy imports hide the base class from mypy)."""
    options: dict[str, Any] = field(default_factory=dict)


def _karras(recipe: SamplerRecipe) -> SamplerRecipe:
    return SamplerRecipe(recipe.scheduler, {**recipe.options, "use_karras_sigmas": True})


_DPMPP_2M = SamplerRecipe(DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2})
_DPMPP_2M_SDE = SamplerRecipe(
    DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
)
_DPMPP_2M_SDE_HEUN = SamplerRecipe(
    DPMSolverMultistepScheduler,
    {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "solver_type": "heun"},
)
_DPMPP_3M_SDE = SamplerRecipe(
    DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}
)
# A1111's "DPM++ SDE" is a two-stage single-step stochastic solver; diffusers' single-step
# DPM-Solver with the SDE variant is the same method without needing torchsde's Brownian tree.
_DPMPP_SDE = SamplerRecipe(
    DPMSolverSinglestepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
)
# diffusers has no ancestral 2S; the deterministic single-step 2nd-order solver is the closest.
_DPMPP_2S_A = SamplerRecipe(
    DPMSolverSinglestepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}
)
_LMS = SamplerRecipe(LMSDiscreteScheduler)
_DPM2 = SamplerRecipe(KDPM2DiscreteScheduler)
_DPM2_A = SamplerRecipe(KDPM2AncestralDiscreteScheduler)

SAMPLERS: dict[str, SamplerRecipe] = {
    "Euler": SamplerRecipe(EulerDiscreteScheduler),
    "Euler a": SamplerRecipe(EulerAncestralDiscreteScheduler),
    "Heun": SamplerRecipe(HeunDiscreteScheduler),
    "LMS": _LMS,
    "LMS Karras": _karras(_LMS),
    "DPM2": _DPM2,
    "DPM2 Karras": _karras(_DPM2),
    "DPM2 a": _DPM2_A,
    "DPM2 a Karras": _karras(_DPM2_A),
    "DPM++ 2S a": _DPMPP_2S_A,
    "DPM++ 2S a Karras": _karras(_DPMPP_2S_A),
    "DPM++ 2M": _DPMPP_2M,
    "DPM++ 2M Karras": _karras(_DPMPP_2M),
    "DPM++ SDE": _DPMPP_SDE,
    "DPM++ SDE Karras": _karras(_DPMPP_SDE),
    "DPM++ 2M SDE": _DPMPP_2M_SDE,
    "DPM++ 2M SDE Karras": _karras(_DPMPP_2M_SDE),
    "DPM++ 2M SDE Heun": _DPMPP_2M_SDE_HEUN,
    "DPM++ 2M SDE Heun Karras": _karras(_DPMPP_2M_SDE_HEUN),
    "DPM++ 3M SDE": _DPMPP_3M_SDE,
    "DPM++ 3M SDE Karras": _karras(_DPMPP_3M_SDE),
    "DPM++ 3M SDE Exponential": SamplerRecipe(
        DPMSolverMultistepScheduler,
        {**_DPMPP_3M_SDE.options, "use_exponential_sigmas": True},
    ),
    # Latent models must not clip the predicted sample to [-1, 1] (DDIM's default, meant for
    # pixel-space models); SD's own DDIM/PNDM configs also leave alpha_prod at t=0 unforced.
    "DDIM": SamplerRecipe(DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}),
    "PLMS": SamplerRecipe(PNDMScheduler, {"skip_prk_steps": True, "set_alpha_to_one": False}),
    "UniPC": SamplerRecipe(UniPCMultistepScheduler),
    "DEIS": SamplerRecipe(DEISMultistepScheduler),
    "LCM": SamplerRecipe(LCMScheduler),
}
"""Every sampler a noise-prediction model (SD 1.5, SDXL, Turbo) can use, by A1111 name.

Keyed by exactly the names of ``core.samplers.SAMPLER_NAMES`` (a test checks both agree).
"""

FLOW_SAMPLERS: dict[str, SamplerRecipe] = {
    "Euler": SamplerRecipe(FlowMatchEulerDiscreteScheduler, {"stochastic_sampling": False}),
    "Euler a": SamplerRecipe(FlowMatchEulerDiscreteScheduler, {"stochastic_sampling": True}),
    "Heun": SamplerRecipe(FlowMatchHeunDiscreteScheduler),
}
"""The samplers a flow-matching model (FLUX) can use, keyed by exactly
``core.samplers.FLOW_SAMPLER_NAMES`` (a test checks both agree)."""

# Options that a base config may carry from the model's default scheduler and that would
# silently change the chosen sampler; each recipe states its own value or gets these.
_RESET: dict[str, Any] = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
}


_SOLVER_KEYS = frozenset(
    {"algorithm_type", "solver_order", "solver_type", "stochastic_sampling", "skip_prk_steps"}
)


def canonical_sampler_name(name: str) -> str:
    """Return the canonical A1111 spelling of ``name`` (any spelling ``core.samplers`` accepts).

    Raises:
        UnknownSamplerError: the name maps to no sampler; the message lists the valid ones.
    """
    if name in SAMPLERS:
        return name
    from core.prompt import PromptError

    try:
        canonical = canonical_sampler(name)
    except PromptError:
        canonical = ""
    if canonical not in SAMPLERS:
        raise UnknownSamplerError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return canonical


@lru_cache(maxsize=64)
def _init_keys(cls: Any) -> frozenset[str]:
    # Some schedulers wrap __init__ in a decorator with (*args, **kwargs); the registered
    # config of a default instance names every option they accept either way.
    params = inspect.signature(inspect.unwrap(cls.__init__)).parameters
    named = {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"}
    if named:
        return frozenset(named)
    return frozenset(k for k in cls.from_config({}).config if not k.startswith("_"))


def is_flow_matching(pipe: Any) -> bool:
    """Whether ``pipe``'s scheduler is a flow-matching one (FLUX and kin) rather than a noise schedule."""
    return "FlowMatch" in type(pipe.scheduler).__name__


def make_scheduler(name: str | None, pipe: Any) -> SchedulerMixin:
    """Build a fresh scheduler for one job.

    The new instance starts from ``pipe.scheduler.config`` (so the model's beta schedule,
    prediction type and timestep spacing are kept) and applies the sampler's options, e.g.
    ``use_karras_sigmas=True`` for the "Karras" names and ``algorithm_type="sde-dpmsolver++"``
    for the SDE ones. ``pipe.scheduler`` itself is never modified: assign the result to the
    pipeline (or a ``from_pipe`` copy) for the job.

    Args:
        name: an A1111 sampler name such as ``"Euler a"`` or ``"DPM++ 2M Karras"``
            (case-insensitive), or None for a fresh copy of the model's default scheduler.
        pipe: a loaded diffusers pipeline.

    Returns:
        A new scheduler instance owned by the caller.

    Raises:
        UnknownSamplerError: the name is unknown, or the model is flow-matching and the
            sampler only works for noise-prediction models.
    """
    base = dict(pipe.scheduler.config)
    if name is None:
        return type(pipe.scheduler).from_config(base)  # type: ignore[no-any-return]
    canonical = canonical_sampler_name(name)
    if is_flow_matching(pipe):
        recipe = FLOW_SAMPLERS.get(canonical)
        if recipe is None:
            raise UnknownSamplerError(
                f"sampler {canonical!r} does not work with this flow-matching model; "
                f"choose one of: {', '.join(FLOW_SAMPLERS)}"
            )
    else:
        recipe = SAMPLERS[canonical]
    accepted = _init_keys(recipe.scheduler)
    overrides = {k: v for k, v in {**_RESET, **recipe.options}.items() if k in accepted}
    # Solver choices of the model's default scheduler (e.g. algorithm_type "deis", a 3rd
    # order) must not leak into the chosen sampler: each falls back to the class default.
    # diffusers' private "_use_default_values" would make from_config drop our overrides of
    # keys the base left at their defaults, so private keys are not carried over.
    config = {k: v for k, v in base.items() if k in accepted and k not in _SOLVER_KEYS}
    config.update(overrides)
    return cast(SchedulerMixin, recipe.scheduler.from_config(config))
