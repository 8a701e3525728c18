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

from core.minors import mentions_minor
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


def training_context(
    job: Any, pictures: list[Image.Image], *, classify: Any, threshold: float, root: Path, progress: Any, stops: Any
) -> TrainingContext:
    """A training job's context: its request, its work folder, progress and stop hooks; its
    pictures scored first (an explicit one is refused where the server does not post NSFW
    images, and always for a face or with captions that refer to a minor).

    Args:
        job: the claimed training job (:class:`gpu_worker.records.ClaimedJob`).
        classify: NSFW scores per picture, or None.
        threshold: the score from which a picture is explicit.
        root: where training jobs keep their work folders.
        progress: makes the job's training progress hook (``RedisProgress.training``), or None.
        stops: the worker's :class:`gpu_worker.stopping.StopWatch`, or None.
    """
    if job.training is None:
        raise JobRejected("this training job has no training request")
    request = TrainingRequest.from_dict(job.training)
    if classify is not None and pictures:
        flagged = [n + 1 for n, score in enumerate(classify(pictures)) if score >= threshold]
        if flagged and mentions_minor(" ".join([request.trigger, *request.captions])):
            raise JobRejected(f"picture {flagged[0]} is explicit and the captions refer to a minor, "
                              "which is never allowed")
        if flagged and request.kind is TrainingKind.FACE:
            raise JobRejected(f"picture {flagged[0]} is explicit; a face LoRA is never trained on explicit pictures")
        if flagged and not request.nsfw_allowed:
            raise JobRejected(f"picture {flagged[0]} is explicit, and this server does not allow NSFW images")
    sweep_work_folders(root)
    return TrainingContext(
        request=request,
        work_dir=root / str(job.id),
        progress=progress(job) if progress is not None else None,
        should_stop=(lambda: stops.stop_requested(job.id)) if stops is not None else None,
    )
