"""Train a LoRA from a member's pictures: the worker's engine behind ``/train``.

It follows diffusers' DreamBooth-LoRA recipe (``examples/dreambooth/train_dreambooth_lora.py``):
peft LoRA adapters on the denoiser's attention and, here, its resnet convolutions (a new
shape lives in the convolutions as much as in the attention), optionally on the text encoder;
the model's own noise schedule and prediction type (epsilon or velocity); AdamW; every caption
carries the trigger word; optional prior preservation (class images the base model draws,
learnt beside the member's so the class keeps its meaning).

What this adds for a bot: pictures of any shape are grouped in aspect-ratio buckets of the
model's size step and pixel budget (each batch from one bucket, centre-cropped to it); every
random draw of step ``n`` comes from a generator seeded by ``(seed, n)``; a checkpoint every
``checkpoint_every`` steps (LoRA weights, optimizer state, losses) in a work folder of the
job, so a killed worker's next attempt resumes where it stopped and ends with the same
weights; a stop asked between steps raises :class:`gpu_worker.stopping.JobStopped` with the
share done. Families: UNet models with one CLIP text encoder (SD 1.5, SD 2, the built-in
model) or two (SDXL) — :attr:`gpu_worker.families.base.Adapter.trains_loras`.

The trainable copies of the denoiser and text encoder are deep copies: the cached pipeline
that renders other jobs is never touched.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gpu_worker.stopping import JobStopped

logger = logging.getLogger(__name__)

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2")
"""Denoiser modules that get LoRA adapters (attention, feed-forward, resnet convolutions)."""
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
"""CLIP text-encoder modules that get LoRA adapters when the text encoder trains too."""
ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16)
"""The aspect-ratio buckets (width / height) pictures are sorted into."""
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True, slots=True)
class LoraTrainingConfig:
    """How a LoRA trains; the job's params hold it, and a checkpoint resumes only the same one."""

    steps: int = 500
    rank: int = 8
    learning_rate: float = 1e-4
    text_encoder_learning_rate: float = 2.5e-5
    batch_size: int = 4
    seed: int = 0
    train_text_encoder: bool = True
    prior_preservation: bool = False
    prior_images: int = 8
    prior_weight: float = 1.0
    checkpoint_every: int = 50
    preview_every: int = 100


@dataclass(frozen=True, slots=True)
class Example:
    """One training picture and its caption (which names the trigger word)."""

    image: Image.Image
    caption: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What a training reports after a step (and with a preview every ``preview_every``)."""

    step: int
    total: int
    loss: float
    preview: Image.Image | None = None


@dataclass
class TrainedLora:
    """The result: the LoRA file, its sha256, the loss curve and timings."""

    path: Path
    sha256: str
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def bucket_size(width: int, height: int, *, pixel_budget: int, step: int) -> tuple[int, int]:
    """The training size of a picture: the bucket aspect nearest its own, at the model's budget."""
    aspect = width / height
    best = min(ASPECTS, key=lambda a: abs(math.log(a / aspect)))
    w = max(step, round(math.sqrt(pixel_budget * best) / step) * step)
    h = max(step, round(math.sqrt(pixel_budget / best) / step) * step)
    return w, h


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale ``image`` to cover ``size`` and crop the centre."""
    image = image.convert("RGB")
    w, h = size
    scale = max(w / image.width, h / image.height)
    resized = image.resize((max(w, round(image.width * scale)), max(h, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return resized.crop((left, top, left + w, top + h))


def fingerprint(examples: Sequence[Example], config: LoraTrainingConfig) -> str:
    """What a checkpoint must match to be resumed: the pictures, captions and config."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    for example in examples:
        digest.update(example.caption.encode())
        digest.update(example.image.convert("RGB").tobytes())
    return digest.hexdigest()


class LoraTrainer:
    """Trains one LoRA on a loaded pipeline's model (see the module docstring)."""

    def __init__(self, pipe: Any, *, pixel_budget: int, size_step: int, steps: int = 20, guidance: float = 3.0) -> None:
        self.pipe = pipe
        self.pixel_budget = pixel_budget
        self.size_step = size_step
        self.render_steps = steps
        self.guidance = guidance
        self.device = pipe.unet.device
        self.xl = getattr(pipe, "text_encoder_2", None) is not None

    # ------------------------------------------------------------------ the run
    def train(
        self,
        examples: Sequence[Example],
        config: LoraTrainingConfig,
        *,
        work_dir: Path,
        class_prompt: str | None = None,
        progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainedLora:
        """Train, resuming from ``work_dir``'s checkpoint when it is of the same run; write the
        LoRA as ``work_dir/pytorch_lora_weights.safetensors``."""
        from peft import LoraConfig

        started = time.perf_counter()
        work_dir.mkdir(parents=True, exist_ok=True)
        unet = copy.deepcopy(self.pipe.unet).to(torch.float32)
        unet.requires_grad_(False)
        # The adapters' first weights are drawn from torch's global generator: seed it (inside
        # fork_rng, so that nothing else in the process sees a change) for a repeatable run.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                        target_modules=list(UNET_TARGETS)))
            encoders = self._encoders(config)
        trainable = [p for p in unet.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": list(trainable), "lr": config.learning_rate}]
        seen = {id(p) for p in trainable}
        for encoder in encoders if config.train_text_encoder else []:
            params = [p for p in encoder.parameters() if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            trainable += params
            if params:
                groups.append({"params": params, "lr": config.text_encoder_learning_rate})
        optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
        data = self._prepare(examples, config, class_prompt)
        key = fingerprint(examples, config)
        step, losses = self._resume(work_dir / "checkpoint.pt", key, unet, encoders, optimizer)
        resumed_from = step
        unet.train()
        while step < config.steps:
            if should_stop is not None and should_stop():
                raise JobStopped(step / config.steps)
            loss = self._step(unet, encoders, data, config, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % config.checkpoint_every == 0 or step == config.steps:
                self._save_checkpoint(work_dir / "checkpoint.pt", key, step, losses, unet, encoders, optimizer)
            if progress is not None:
                preview = None
                if config.preview_every and step % config.preview_every == 0 and step < config.steps:
                    preview = self.sample(unet, encoders, [data.preview_prompt], seeds=[config.seed])[0]
                progress(Progress(step, config.steps, float(np.mean(losses[-10:])), preview))
        path = self._export(unet, encoders, work_dir)
        self.trained_unet, self.trained_encoders = unet, encoders
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return TrainedLora(path, digest, step, losses, time.perf_counter() - started, resumed_from)

    def sample(self, unet: Any, encoders: Sequence[Any], prompts: Sequence[str], *, seeds: Sequence[int],
               size: tuple[int, int] | None = None) -> list[Image.Image]:
        """Pictures drawn with the weights being trained (a preview, or the result's samples)."""
        parts = dict(self.pipe.components)
        parts["unet"] = unet
        names = ["text_encoder", "text_encoder_2"][: len(encoders)]
        parts.update(dict(zip(names, encoders, strict=True)))
        pipe = type(self.pipe)(**parts)
        pipe.set_progress_bar_config(disable=True)
        was_training = unet.training
        unet.eval()
        width, height = size or bucket_size(1, 1, pixel_budget=self.pixel_budget, step=self.size_step)
        try:
            with torch.no_grad():
                generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
                return list(pipe(prompt=list(prompts), width=width, height=height, generator=generators,
                                 num_inference_steps=self.render_steps, guidance_scale=self.guidance).images)
        finally:
            unet.train(was_training)

    # ------------------------------------------------------------------ pieces
    def _encoders(self, config: LoraTrainingConfig) -> list[Any]:
        from peft import LoraConfig

        encoders = [self.pipe.text_encoder] + ([self.pipe.text_encoder_2] if self.xl else [])
        if not config.train_text_encoder:
            return encoders
        trained = []
        for encoder in encoders:
            copied = copy.deepcopy(encoder).to(torch.float32)
            copied.requires_grad_(False)
            _add_lora(copied, LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                         target_modules=list(TEXT_TARGETS)))
            trained.append(copied)
        return trained

    def _prepare(self, examples: Sequence[Example], config: LoraTrainingConfig, class_prompt: str | None) -> _Data:
        """Latent distributions of every picture (encoded once), grouped in buckets."""
        data = _Data(preview_prompt=examples[0].caption)
        pictures = [(e.image, e.caption, 1.0) for e in examples]
        if config.prior_preservation and class_prompt:
            seeds = [config.seed * 1000 + i for i in range(config.prior_images)]
            base_encoders = [self.pipe.text_encoder] + ([self.pipe.text_encoder_2] if self.xl else [])
            images = self.sample(self.pipe.unet, base_encoders, [class_prompt] * len(seeds), seeds=seeds)
            pictures += [(image, class_prompt, config.prior_weight) for image in images]
        vae = self.pipe.vae
        for image, caption, weight in pictures:
            size = bucket_size(image.width, image.height, pixel_budget=self.pixel_budget, step=self.size_step)
            fitted = np.asarray(fit(image, size), dtype=np.float32) / 127.5 - 1.0
            pixels = torch.from_numpy(fitted).permute(2, 0, 1)[None].to(self.device, vae.dtype)
            with torch.no_grad():
                dist = vae.encode(pixels).latent_dist
            data.buckets.setdefault(size, []).append(
                _Item(dist.mean[0].float().cpu(), dist.std[0].float().cpu(), caption, weight)
            )
        return data

    def _step(self, unet: Any, encoders: Sequence[Any], data: _Data, config: LoraTrainingConfig, step: int) -> Any:
        generator = torch.Generator("cpu").manual_seed(config.seed * 1_000_003 + step)
        sizes = sorted(data.buckets)
        counts = torch.tensor([len(data.buckets[s]) for s in sizes], dtype=torch.float32)
        size = sizes[int(torch.multinomial(counts, 1, generator=generator))]
        items = data.buckets[size]
        picks = torch.randint(len(items), (config.batch_size,), generator=generator).tolist()
        chosen = [items[i] for i in picks]
        mean = torch.stack([c.mean for c in chosen])
        std = torch.stack([c.std for c in chosen])
        vae_config = self.pipe.vae.config
        latents = mean + std * torch.randn(mean.shape, generator=generator)
        latents = (latents - (getattr(vae_config, "shift_factor", None) or 0.0)) * vae_config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        scheduler = self._noise_schedule()
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(chosen),), generator=generator)
        latents, noise, timesteps = latents.to(self.device), noise.to(self.device), timesteps.to(self.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        kwargs = self._conditioning(encoders, [c.caption for c in chosen], size)
        prediction = unet(noisy, timesteps, **kwargs).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        per_item = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        weights = torch.tensor([c.weight for c in chosen], device=per_item.device)
        return (per_item * weights).sum() / weights.sum()

    def _noise_schedule(self) -> Any:
        if not hasattr(self, "_scheduler"):
            from diffusers import DDPMScheduler

            self._scheduler = DDPMScheduler.from_config(self.pipe.scheduler.config)
        return self._scheduler

    def _conditioning(self, encoders: Sequence[Any], captions: list[str], size: tuple[int, int]) -> dict[str, Any]:
        tokenizers = [self.pipe.tokenizer] + ([self.pipe.tokenizer_2] if self.xl else [])
        hidden, pooled = [], None
        for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
            ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            if self.xl:
                out = encoder(ids, output_hidden_states=True)
                hidden.append(out.hidden_states[-2])
                pooled = out[0]
            else:
                hidden.append(encoder(ids)[0])
        kwargs: dict[str, Any] = {"encoder_hidden_states": torch.cat(hidden, dim=-1)}
        if self.xl:
            width, height = size
            time_ids = torch.tensor([[height, width, 0, 0, height, width]] * len(captions), device=self.device,
                                    dtype=kwargs["encoder_hidden_states"].dtype)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        return kwargs

    def _resume(self, path: Path, key: str, unet: Any, encoders: Sequence[Any], optimizer: Any) -> tuple[int, list[float]]:
        from peft import set_peft_model_state_dict

        if not path.is_file():
            return 0, []
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") != key:
            return 0, []
        set_peft_model_state_dict(unet, saved["unet"])
        for encoder, state in zip(encoders, saved.get("encoders", []), strict=False):
            set_peft_model_state_dict(encoder, state)
        optimizer.load_state_dict(saved["optimizer"])
        logger.info("resuming the training in %s at step %d", path.parent.name, int(saved["step"]))
        return int(saved["step"]), list(saved["losses"])

    def _save_checkpoint(self, path: Path, key: str, step: int, losses: list[float], unet: Any,
                         encoders: Sequence[Any], optimizer: Any) -> None:
        from peft import get_peft_model_state_dict

        state = {
            "key": key, "step": step, "losses": losses, "unet": get_peft_model_state_dict(unet),
            "encoders": [get_peft_model_state_dict(e) for e in encoders if getattr(e, "peft_config", None)],
            "optimizer": optimizer.state_dict(),
        }
        partial = path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, path)

    def _export(self, unet: Any, encoders: Sequence[Any], work_dir: Path) -> Path:
        """The LoRA in diffusers' format, loadable by ``load_lora_weights``."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft import get_peft_model_state_dict

        layers: dict[str, Any] = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))}
        names = ["text_encoder_lora_layers", "text_encoder_2_lora_layers"]
        for name, encoder in zip(names, encoders, strict=False):
            if getattr(encoder, "peft_config", None):
                layers[name] = convert_state_dict_to_diffusers(get_peft_model_state_dict(encoder))
        type(self.pipe).save_lora_weights(str(work_dir), **layers, weight_name=WEIGHTS_NAME)
        return work_dir / WEIGHTS_NAME


def _add_lora(model: Any, config: Any) -> None:
    """LoRA layers in a transformers text encoder through peft itself (transformers'
    ``add_adapter`` wants a newer peft than diffusers does); ``peft_config`` as peft's
    state-dict helpers expect it."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, model, adapter_name="default")
    model.peft_config = {"default": config}


@dataclass
class _Item:
    mean: Any
    std: Any
    caption: str
    weight: float


@dataclass
class _Data:
    preview_prompt: str
    buckets: dict[tuple[int, int], list[_Item]] = field(default_factory=dict)
