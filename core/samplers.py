"""Sampler names as users know them from AUTOMATIC1111's web UI.

Specs store the canonical A1111 spelling ("DPM++ 2M Karras"); the GPU worker maps each name
in :data:`SAMPLER_NAMES` to a diffusers scheduler. Users may also type the k-diffusion /
ComfyUI spelling (``dpmpp_2m_karras``, ``euler_ancestral``), the old ``k_`` names
(``k_euler_a``) or a diffusers class name (``EulerAncestralDiscreteScheduler``), in any case.
"""

from __future__ import annotations

import difflib
import re

from core.errors import PromptError

SAMPLER_NAMES: tuple[str, ...] = (
    "Euler",
    "Euler a",
    "Heun",
    "LMS",
    "LMS Karras",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "DPM2 a Karras",
    "DPM++ 2S a",
    "DPM++ 2S a Karras",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM++ 2M SDE Heun",
    "DPM++ 2M SDE Heun Karras",
    "DPM++ 3M SDE",
    "DPM++ 3M SDE Karras",
    "DPM++ 3M SDE Exponential",
    "DDIM",
    "PLMS",
    "UniPC",
    "DEIS",
    "LCM",
)
"""Every sampler a spec may name, in A1111's spelling (the form stored in specs).

Each one must have a recipe in ``gpu_worker.schedulers.SAMPLERS``: a name listed here and
missing there would be accepted from the user and then fail on the GPU.
"""

# Names that do not reduce to a canonical key by spelling alone.
FLOW_SAMPLER_NAMES: tuple[str, ...] = ("Euler", "Euler a", "Heun")
"""The samplers a flow-matching model (FLUX and kin) can use; the others assume a noise
schedule. Each has a recipe in ``gpu_worker.schedulers.FLOW_SAMPLERS``."""

_ALIASES = {
    "pndm": "PLMS",  # diffusers' name for the PLMS sampler
    "dpmsolver": "DPM++ 2M",  # DPMSolverMultistepScheduler's defaults are DPM++ 2M
    "dpmsolversde": "DPM++ SDE",
}


def _key(name: str) -> str:
    """Reduce a spelling to a comparison key: ``"DPM++ 2M Karras"`` -> ``"dpmpp2mkarras"``."""
    key = name.strip().lower().replace("+", "p")
    key = re.sub(r"[^a-z0-9]", "", key)
    for noise in ("scheduler", "discrete", "multistep"):
        key = key.replace(noise, "")
    # ComfyUI's "_gpu" variants (dpmpp_2m_sde_gpu) are the same samplers seeded on the GPU.
    return key.removesuffix("gpu").replace("ancestral", "a")


_BY_KEY: dict[str, str] = {_key(name): name for name in SAMPLER_NAMES}
_BY_KEY.update(_ALIASES)


def canonical_sampler(name: str) -> str:
    """Return the canonical A1111 name for ``name`` (case, spaces, ``_`` and ``+`` ignored).

    Raises:
        PromptError: if the name matches no sampler; the message suggests close matches
            or lists every sampler.
    """
    key = _key(name)
    found = _BY_KEY.get(key)
    if found is None and key.startswith("k"):
        found = _BY_KEY.get(key[1:])  # old A1111 names: k_euler_a, k_lms, ...
    if found is not None:
        return found

    close = difflib.get_close_matches(key, list(_BY_KEY), n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(_BY_KEY[k] for k in close))
    if suggestions:
        listed = ", ".join(f'"{s}"' for s in suggestions)
        raise PromptError(name, f"unknown sampler; did you mean {listed}?")
    raise PromptError(name, "unknown sampler; choose one of " + ", ".join(SAMPLER_NAMES))
