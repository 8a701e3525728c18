"""The ``train_lora`` operation: a training job's pictures become a LoRA and four samples.

The renderer hands it the stored pictures (``ctx.sources``) and a :class:`TrainingContext`
(the request, a work folder that survives the process, progress and stop hooks). It trains
with :class:`gpu_worker.lora_training.LoraTrainer` on the job's model (the family adapter
says whether it can), draws the four sample prompts of the request's kind with the new
weights, and returns the samples as the job's images with the LoRA file beside them; the
renderer stores both and the service marks the LoRA ready in the transaction that ends the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from core.models import ModelDefaults
from core.spec import JobSpec
from core.training import TrainingKind, TrainingRequest, sample_prompts
from gpu_worker.failures import JobRejected


@dataclass(frozen=True, slots=True)
class TrainingContext:
    """What a training job needs beyond an operation's usual context."""

    request: TrainingRequest
    work_dir: Path
    """Checkpoints and the LoRA file (kept across attempts: a new attempt resumes)."""
    progress: Callable[[int, int, float, Image.Image | None], None] | None = None
    should_stop: Callable[[], bool] | None = None


CLASS_PROMPTS = {TrainingKind.SUBJECT: "a photo", TrainingKind.FACE: "a photo of a person's face",
                 TrainingKind.STYLE: "a picture"}


def auto_captions(request: TrainingRequest, pictures: list[Image.Image], captioner: Any) -> tuple[str, ...]:
    """The request's captions, with each one left empty read from its picture by the model's
    captioner (the ``/describe`` one), when it has one."""
    if captioner is None or all(request.captions):
        return request.captions
    filled = []
    for n, (caption, picture) in enumerate(zip(request.captions, pictures, strict=True)):
        if not caption:
            said = captioner.describe(picture, count=1, seed=request.seed + n)
            caption = said[0].strip() if said else ""
        filled.append(caption)
    return tuple(filled)


def train(
    pipelines: Any, spec: JobSpec, defaults: ModelDefaults, sources: list[Image.Image], training: TrainingContext | None,
    captioner: Any = None,
) -> tuple[list[Image.Image], Any, dict[str, object], Any]:
    """Train; returns the samples, their render settings, PNG extras and the trained LoRA.
    Pictures without a caption are captioned by ``captioner`` (the model's, if any)."""
    from gpu_worker.lora_training import Example, LoraTrainer, LoraTrainingConfig
    from gpu_worker.ops.common import RenderSettings

    if training is None:
        raise JobRejected("this training job has no training request")
    request = training.request
    if len(sources) != len(request.captions):
        raise JobRejected("some of this training's pictures are missing")
    with pipelines.job(spec, "text2img") as pipe:
        if getattr(pipe, "unet", None) is None or getattr(pipe, "text_encoder", None) is None:
            raise JobRejected(f"model {spec.model!r} cannot train LoRAs (only UNet models such as SD 1.5 "
                              "and SDXL can)")
        trainer = LoraTrainer(pipe, pixel_budget=defaults.pixel_budget, size_step=defaults.size_step,
                              steps=defaults.steps, guidance=defaults.cfg)
        request = replace(request, captions=auto_captions(request, sources, captioner))
        examples = [Example(image, caption) for image, caption in zip(sources, request.training_captions(),
                                                                       strict=True)]
        config = LoraTrainingConfig(steps=request.steps, rank=request.rank, seed=request.seed,
                                    learning_rate=defaults.lora_learning_rate,
                                    text_encoder_learning_rate=defaults.lora_learning_rate / 4,
                                    preview_every=max(50, request.steps // 5))

        def report(p: Any) -> None:
            if training.progress is not None:
                training.progress(p.step, p.total, p.loss, p.preview)

        trained = trainer.train(examples, config, work_dir=training.work_dir, progress=report,
                                should_stop=training.should_stop,
                                class_prompt=CLASS_PROMPTS[request.kind])
        seed = spec.seed or 0
        seeds = tuple(seed + i for i in range(4))
        samples = trainer.sample(trainer.trained_unet, trainer.trained_encoders,
                                 sample_prompts(request.kind, request.trigger), seeds=seeds)
    size = samples[0].size
    settings = RenderSettings(width=size[0], height=size[1], steps=defaults.steps, cfg=defaults.cfg,
                              sampler=defaults.sampler, seeds=seeds)
    extra: dict[str, object] = {"LoRA trained": f"{trained.steps} steps", "Trigger": request.trigger}
    return samples, settings, extra, trained


WORK_FOLDER_DAYS = 7
"""A training's work folder is kept this long after its last change (a retried attempt resumes
from it; a done job no longer needs it)."""


def sweep_work_folders(root: Path, *, older_than_days: float = WORK_FOLDER_DAYS) -> None:
    """Remove training work folders untouched for ``older_than_days``."""
    import shutil
    import time

    if not root.is_dir():
        return
    cutoff = time.time() - older_than_days * 86400
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
