"""Which jobs may render together in one pipeline call (cross-job batching).

A GPU renders a batch of 16 images in far less than four times the time of 4: the
denoiser's weights are read once per step for the whole batch. Jobs of one model can share
a call when everything that is one value per call is the same for them: the task, the size,
the denoising steps, the guidance, the sampler, the LoRAs, seamless tiling and ``--stop``.
What differs per image stays each job's own: its prompt and negative prompt (as
embeddings, one row per image), its seeds (one generator per image), ``--chaos`` and
``--weird`` (which move each job's own embeddings), and its progress and Stop button.

:func:`batch_key` says it for one job: the same key means the same call may render both;
None means the job always renders alone (it starts from pictures, follows references or
ControlNets, or is not a text-to-image job at all). The bot stores the key with the job
(``jobs.batch_key``), so a worker finds a job's companions with one indexed query; the
worker decides how many to take and how long to wait for them
(:class:`core.models.SpeedOptions`).
"""

from __future__ import annotations

import hashlib
import json

from core.spec import JobKind, JobSpec

BATCHED_KINDS: frozenset[tuple[JobKind, str | None]] = frozenset({(JobKind.IMAGINE, None), (JobKind.REROLL, None)})
"""The ``(kind, variant)`` recipes that render as one text-to-image call from the prompt alone."""


def batch_key(kind: JobKind, variant: str | None, spec: JobSpec) -> str | None:
    """The key of the pipeline call ``spec`` needs, or None when it must render alone.

    Everything that is one value per call is in the key (see the module docstring);
    nothing that is one value per image is.
    """
    if (kind, variant) not in BATCHED_KINDS:
        return None
    if spec.image_urls or spec.style_refs or spec.character_refs or spec.controls or spec.mask_id is not None:
        return None
    call = {
        "size": [spec.width, spec.height],
        "steps": spec.steps,
        "quality": spec.quality,
        "cfg": spec.cfg,
        "stylize": spec.stylize,
        "sampler": spec.sampler,
        "clip_skip": spec.clip_skip,
        "loras": sorted(f"{lora.name.lower()}:{lora.weight:g}:{lora.sha256 or ''}" for lora in spec.loras),
        "tile": spec.tile,
        "stop": spec.stop,
    }
    digest = hashlib.sha256(json.dumps(call, sort_keys=True).encode()).hexdigest()
    return f"t2i:{digest[:32]}"
