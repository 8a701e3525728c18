"""Train the built-in ``shapes`` text-to-image model on the CPU, resumably.

Longer than 400 lines on purpose: the recipe that produced the shipped weights reads top to
bottom in one file (its ``training.json`` records this file's configuration).

``python -m gpu_worker.training.train --out DIR [--work DIR] [options]`` runs four stages,
each of which picks up where an interrupted run stopped:

1. **vae**: an ``AutoencoderKL`` learns to reconstruct freshly drawn scenes (every step draws
   new ones, so it never overfits);
2. **latents**: the training scenes of every training size are encoded once (mean and
   standard deviation of each latent), and the scaling factor that gives the latents unit
   variance is measured;
3. **unet**: the text encoder and the UNet learn together to predict velocity on those
   latents, with captions redrawn every step (phrasing, left-out attributes, and an empty
   caption 10 % of the time so that the empty prompt is the unconditional model that
   classifier-free guidance needs); an exponential moving average of the weights is kept;
   then, with ``--decoder-steps``, the VAE's decoder is sharpened for the UNet's latents
   (blurred and noised encoder latents), and with ``--own-latent-steps`` on the latents the
   UNet itself makes of the training scenes (:mod:`gpu_worker.training.own_latents`);
4. **export**: the averaged weights, the VAE, the tokenizer and the scheduler are saved as a
   diffusers folder (``.safetensors``) with ``training.json`` (figures of the run).

Everything random in a step is drawn from generators seeded by (seed, stage, step), and
checkpoints (``--work``, default ``data/shapes-training``) hold the weights, optimizer
state, averaged weights and figures, so a run stopped at any point and resumed with the
same arguments ends with the same weights as an uninterrupted one (on the same machine and
thread count: CPU kernels may sum in a different order on other hardware).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while they wait for each other make a step 30 % faster on an
# idle machine (measured: 0.44 s against 0.61 s per UNet step on 2 cores) but several times
# slower when other processes compete for the cores; set OMP_WAIT_POLICY=PASSIVE in the
# environment to train beside other work.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import argparse
import json
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from transformers import CLIPTextModel, CLIPTokenizer

from gpu_worker.training.components import (
    NOISE_SCHEDULE,
    ModelSizes,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
)
from gpu_worker.training.dataset import (
    TRAIN_SIZES,
    Scene,
    caption,
    fragment_caption,
    sample_scene,
    shape_region,
    training_scenes,
)
from gpu_worker.training.own_latents import OwnLatents, figures_of, tune_decoder
from gpu_worker.training.steps import (
    DECODER_BLUR_MAX,
    DECODER_NOISE_MAX,
    LOG_EVERY,
    Log,
    StageLog,
    generator,
    learning_rate,
    scenes_to_tensor,
    step_seed,
    to_device,
    tune_decoder_steps,
    weighted_error,
)
from gpu_worker.training.steps import blur as _blur
from gpu_worker.training.steps import count_step as _count_step
from gpu_worker.training.steps import load_checkpoint as _load
from gpu_worker.training.steps import print_log as _print_log
from gpu_worker.training.steps import save_atomic as _save_atomic

Size = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that decides the trained weights (the defaults made the shipped model)."""

    seed: int = 0
    sizes: ModelSizes = field(default_factory=ModelSizes)
    vae_steps: int = 4000
    """VAE optimizer steps."""
    vae_batch: int = 16
    vae_lr: float = 2e-3
    kl_weight: float = 1e-4
    """Weight of the KL term per latent element (keeps latents smooth and near unit scale)."""
    square_count: int = 8192
    """Training scenes at 64x64."""
    rect_count: int = 1024
    """Training scenes at each non-square training size."""
    sizes_trained: tuple[Size, ...] = TRAIN_SIZES
    """Image sizes ``(width, height)``; the first is the native one."""
    rect_fraction: float = 0.25
    """Fraction of UNet steps whose batch is of a non-square size."""
    unet_steps: int = 6000
    unet_batch: int = 64
    lr: float = 1e-3
    warmup: int = 50
    """Steps of linear learning-rate warm-up (each stage), before a cosine decay to 10 %."""
    caption_dropout: float = 0.1
    """Fraction of captions replaced by the empty prompt."""
    attribute_drop: float = 0.1
    """Chance that a caption leaves out each of colour, background and position (size: twice)."""
    fragment_captions: float = 0.1
    """Fraction of captions that name only one or two attributes ("red", "on the left"),
    so that such words alone, as in negative prompts, mean what they say."""
    layout_steps: int = 1500
    """The first UNet steps, which learn the layout (see ``high_noise_from``): full captions
    only and ``layout_high_noise_fraction`` of the samples at high noise."""
    layout_high_noise_fraction: float = 0.8
    high_noise_fraction: float = 0.3
    """After the layout steps: the fraction of UNet samples whose timestep is drawn from
    ``[high_noise_from, 1000)`` only (the rest: uniform over all timesteps)."""
    high_noise_from: int = 700
    """Where the high-noise timesteps start. Only there does the prompt alone decide where
    the shape goes and what colour it has (below it, the noisy latent already shows them),
    and the conditional mean of a caption is what the model must learn to follow prompts:
    trained on uniform timesteps alone, a model this small ignored position words after
    2,600 steps; with half its samples here it learns them."""
    shape_loss_weight: float = 0.0
    """Extra weight of the UNet's loss around the shape (its bounding box grown by 2 pixels,
    averaged down to the latent grid): 0 weighs every latent pixel alike. The pixels that
    tell a square from a circle are a few percent of an image, so a plain mean lets the
    UNet round a small square's corners."""
    vae_shape_loss_weight: float = 0.0
    """The same for the VAE's reconstruction loss, in pixels (r6's VAE with 5 read squares no
    better than r2's: see RESULTS.md)."""
    decoder_steps: int = 2000
    """Steps of a last stage that sharpens the VAE's decoder for the UNet's latents (0: none;
    the shipped r7 has 2,000, which raised its shape class from 61.3 % to 63.7 %):
    the encoder stays as it is (so the latents and the UNet do not change) and the decoder
    learns to draw the true scene from latents blurred and noised the way the UNet's come
    out, which are smoother than the encoder's."""
    decoder_lr: float = 5e-4
    own_latent_steps: int = 3000
    """Steps of the last stage (:mod:`gpu_worker.training.own_latents`: the decoder learns to
    draw the true scene from the UNet's own img2img latents of it; 0: none)."""
    small_shape_passes: tuple[tuple[int, int, float], ...] = ((1500, 1, 3e-4), (2000, 2, 3e-4), (1500, 2, 2e-4))
    """Further passes of that stage, each on the one before (none: no pass): ``(steps, n, lr)``,
    the native set grown by ``n`` times its number of text-to-image pictures of small shapes
    (:func:`small_shape_settings`): the small square, 3.5 latent pixels across, is the shape
    the decoder draws worst."""
    ema_decay: float = 0.999
    checkpoint_every: int = 25
    """Steps between checkpoints (not part of the result)."""
    device: str = "cpu"
    """Where the stages run (``cuda`` on a GPU machine; not part of the result's identity,
    though a GPU's kernels give other weights than the CPU's for the same seed)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def result_fields(self) -> dict[str, Any]:
        """The fields that decide the weights, to check that a resumed run is the same run."""
        data = self.to_json()
        data.pop("checkpoint_every")
        data.pop("device")
        return data


class ConfigMismatchError(RuntimeError):
    """The work folder holds a run made with different settings."""


# ---------------------------------------------------------------------------------------
# Small helpers


def alphas_cumprod(schedule: dict[str, Any] = NOISE_SCHEDULE) -> torch.Tensor:
    """alpha-bar of each training timestep, exactly as diffusers computes it for ``linear``."""
    betas = torch.linspace(
        schedule["beta_start"], schedule["beta_end"], schedule["num_train_timesteps"], dtype=torch.float32
    )
    return torch.cumprod(1.0 - betas, dim=0)


def _choose_size(rng: random.Random, config: TrainConfig) -> Size:
    native, *others = config.sizes_trained
    if others and rng.random() < config.rect_fraction:
        return rng.choice(others)
    return native


def _scene_count(config: TrainConfig, size: Size) -> int:
    return config.square_count if size == config.sizes_trained[0] else config.rect_count


# ---------------------------------------------------------------------------------------
# Stage 1: VAE


def _start_as_plain_autoencoder(vae: AutoencoderKL, log_variance: float = -6.0) -> None:
    # With the default initialisation the posterior's standard deviation starts at 1, as
    # large as the latents themselves, and the decoder learns from noise for hundreds of
    # steps; starting it small (0.05) makes the first steps those of a plain autoencoder.
    # The KL term is free to raise it again.
    channels = int(vae.config["latent_channels"])
    quant_conv = vae.quant_conv
    assert quant_conv is not None and quant_conv.bias is not None  # built with use_quant_conv
    with torch.no_grad():
        quant_conv.weight[channels:].zero_()
        quant_conv.bias[channels:].fill_(log_variance)


def train_vae(config: TrainConfig, work: Path, log: Log = _print_log) -> tuple[AutoencoderKL, StageLog]:
    """Train (or finish training, or load) the VAE; see the module docstring.

    Returns:
        The VAE in eval mode and its stage figures.
    """
    done = work / "vae"
    ckpt_path = work / "vae.ckpt"
    if (done / "config.json").exists():
        state = _load(ckpt_path)
        stage = StageLog(**state["log"]) if state else StageLog()
        loaded = AutoencoderKL.from_pretrained(done)
        to_device(config.device, loaded)
        return loaded.eval(), stage

    torch.manual_seed(step_seed(config.seed, "vae-init"))
    vae = build_vae(config.sizes)
    _start_as_plain_autoencoder(vae)
    to_device(config.device, vae)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    stage = StageLog()
    state = _load(ckpt_path)
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        stage = StageLog(**state["log"])
        log(f"vae: resuming at step {stage.steps}")
    vae.train()
    window: list[float] = []
    while stage.steps < config.vae_steps:
        step = stage.steps
        started = time.perf_counter()
        rng = random.Random(step_seed(config.seed, "vae", step))
        width, height = _choose_size(rng, config)
        scenes = [sample_scene(rng, width, height) for _ in range(config.vae_batch)]
        images = scenes_to_tensor(scenes).to(config.device)
        region = torch.from_numpy(shape_region(scenes))[:, None].to(config.device) if config.vae_shape_loss_weight else None
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.vae_steps, config.vae_lr, config.warmup)
        posterior = vae.encode(images).latent_dist
        latents = posterior.sample(generator=generator(config.seed, "vae-noise", step))
        recon = vae.decode(latents).sample
        kl = posterior.kl().mean() / latents[0].numel()
        loss = weighted_error(recon, images, region, config.vae_shape_loss_weight) + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if _count_step(stage, window, loss.item(), started):
            log(f"vae {stage.steps}/{config.vae_steps} loss {stage.losses[-1]:.5f} kl {float(kl):.3f} "
                f"{stage.seconds / stage.steps:.2f} s/step")
        if stage.steps % config.checkpoint_every == 0 or stage.steps == config.vae_steps:
            _save_atomic({"model": vae.state_dict(), "optimizer": optimizer.state_dict(),
                          "log": asdict(stage)}, ckpt_path)
    vae.eval()
    vae.save_pretrained(done, safe_serialization=True)
    return vae, stage


# ---------------------------------------------------------------------------------------
# Stage 2: latents


@dataclass(slots=True)
class LatentSet:
    """The encoded training scenes of one image size."""

    scenes: list[Scene]
    mean: torch.Tensor
    std: torch.Tensor
    region: torch.Tensor | None = None
    """``(N, 1, h, w)``: each scene's :func:`shape_region` averaged down to the latent grid
    (only when the run weighs the loss there)."""


def encode_latents(
    config: TrainConfig, vae: AutoencoderKL, work: Path, log: Log = _print_log
) -> tuple[dict[Size, LatentSet], float, float]:
    """Encode (or load) the training scenes of every size; measure the scaling factor.

    Returns:
        The latent sets by size, the scaling factor (1 / standard deviation of sampled
        native-size latents) and the seconds spent encoding in this call.
    """
    started = time.perf_counter()
    sets: dict[Size, LatentSet] = {}
    for size in config.sizes_trained:
        width, height = size
        scenes = training_scenes(_scene_count(config, size), seed=config.seed, width=width, height=height)
        path = work / f"latents-{width}x{height}.pt"
        stored = _load(path)
        if stored is None:
            means, stds = [], []
            with torch.no_grad():
                for start in range(0, len(scenes), 64):
                    posterior = vae.encode(scenes_to_tensor(scenes[start : start + 64]).to(config.device)).latent_dist
                    means.append(posterior.mean.half().cpu())
                    stds.append(posterior.std.half().cpu())
            stored = {"mean": torch.cat(means), "std": torch.cat(stds)}
            _save_atomic(stored, path)
            log(f"latents: encoded {len(scenes)} scenes at {width}x{height}")
        region = None
        if config.shape_loss_weight:
            pixels = torch.from_numpy(shape_region(scenes))[:, None]
            region = F.adaptive_avg_pool2d(pixels, tuple(stored["mean"].shape[-2:])).half()
        sets[size] = LatentSet(scenes, stored["mean"], stored["std"], region)
    native = sets[config.sizes_trained[0]]
    noise = torch.randn(native.mean.shape, generator=generator(config.seed, "scale"))
    sampled = native.mean.float() + native.std.float() * noise
    scale = float(1.0 / sampled.std())
    return sets, scale, time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# Stage 3: text encoder + UNet


def _tokenize(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return torch.as_tensor(ids)


def _ema_update(averaged: Iterable[torch.Tensor], current: Iterable[torch.Tensor], decay: float) -> None:
    with torch.no_grad():
        for avg, cur in zip(averaged, current, strict=True):
            avg.lerp_(cur, 1.0 - decay)


def _training_caption(config: TrainConfig, scene: Scene, rng: random.Random, *, layout: bool) -> str:
    # The empty caption stays in every phase: it is the unconditional model of guidance.
    draw = rng.random()
    if draw < config.caption_dropout:
        return ""
    if layout:
        return caption(scene, rng, drop_probability=0.0)
    if draw < config.caption_dropout + config.fragment_captions:
        return fragment_caption(scene, rng)
    return caption(scene, rng, drop_probability=config.attribute_drop)


def train_denoiser(
    config: TrainConfig,
    latent_sets: dict[Size, LatentSet],
    scale: float,
    work: Path,
    log: Log = _print_log,
    *,
    stop_after: int | None = None,
) -> tuple[CLIPTextModel, UNet2DConditionModel, StageLog]:
    """Train (or finish training) the text encoder and UNet together; return the averaged weights.

    Args:
        config: the run's settings.
        latent_sets: from :func:`encode_latents`.
        scale: the VAE scaling factor.
        work: the checkpoint folder.
        log: progress messages.
        stop_after: stop (after checkpointing) once this many steps are done in total, as an
            interruption would; for tests of resuming.

    Returns:
        The text encoder and UNet holding the moving-average weights, and the stage figures.
    """
    tokenizer = build_tokenizer()
    torch.manual_seed(step_seed(config.seed, "text-init"))
    text_encoder = build_text_encoder(config.sizes, len(tokenizer))
    torch.manual_seed(step_seed(config.seed, "unet-init"))
    unet = build_unet(config.sizes)
    to_device(config.device, text_encoder, unet)
    params = [p for m in (text_encoder, unet) for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    averaged = [p.detach().clone() for p in params]
    stage = StageLog()
    ckpt_path = work / "unet.ckpt"
    state = _load(ckpt_path)
    if state is not None:
        text_encoder.load_state_dict(state["text_encoder"])
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        for avg, saved in zip(averaged, state["averaged"], strict=True):
            avg.copy_(saved)
        stage = StageLog(**state["log"])
        log(f"unet: resuming at step {stage.steps}")
    alpha_bar = alphas_cumprod()
    text_encoder.train()
    unet.train()
    window: list[float] = []
    last = config.unet_steps if stop_after is None else min(stop_after, config.unet_steps)
    while stage.steps < last:
        step = stage.steps
        started = time.perf_counter()
        rng = random.Random(step_seed(config.seed, "unet", step))
        size = _choose_size(rng, config)
        data = latent_sets[size]
        index = [rng.randrange(len(data.scenes)) for _ in range(config.unet_batch)]
        layout = step < config.layout_steps
        captions = [_training_caption(config, data.scenes[i], rng, layout=layout) for i in index]
        gen = generator(config.seed, "unet-noise", step)
        picked = torch.tensor(index)
        mean, std = data.mean[picked].float(), data.std[picked].float()
        clean = (mean + std * torch.randn(mean.shape, generator=gen)) * scale
        noise = torch.randn(clean.shape, generator=gen)
        timesteps = torch.randint(0, alpha_bar.numel(), (len(index),), generator=gen)
        high = torch.randint(config.high_noise_from, alpha_bar.numel(), (len(index),), generator=gen)
        share = config.layout_high_noise_fraction if layout else config.high_noise_fraction
        timesteps = torch.where(torch.rand(len(index), generator=gen) < share, high, timesteps)
        a = alpha_bar[timesteps].sqrt().view(-1, 1, 1, 1)
        s = (1.0 - alpha_bar[timesteps]).sqrt().view(-1, 1, 1, 1)
        # Drawn on the CPU from the step's generator (the same numbers on every device), then moved.
        clean, noise, a, s = (t.to(config.device) for t in (clean, noise, a, s))
        timesteps = timesteps.to(config.device)
        noisy = a * clean + s * noise
        # Velocity: plain MSE on v weighs the high-noise steps (where the background colour
        # and the layout are decided) like an x0 loss and the low-noise ones like an eps loss.
        target = a * noise - s * clean

        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.unet_steps, config.lr, config.warmup)
        context = text_encoder(_tokenize(tokenizer, captions).to(config.device))[0]
        prediction = unet(noisy, timesteps, context).sample
        region = data.region[picked].float().to(config.device) if data.region is not None else None
        loss = weighted_error(prediction, target, region, config.shape_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        # Warm-up of the average: early weights are noise, so the decay grows from 0.
        _ema_update(averaged, params, min(config.ema_decay, (1 + step) / (10 + step)))

        if _count_step(stage, window, loss.item(), started):
            log(f"unet {stage.steps}/{config.unet_steps} loss {stage.losses[-1]:.4f} "
                f"{stage.seconds / stage.steps:.2f} s/step")
        if stage.steps % config.checkpoint_every == 0 or stage.steps == last:
            _save_atomic({
                "text_encoder": text_encoder.state_dict(),
                "unet": unet.state_dict(),
                "optimizer": optimizer.state_dict(),
                "averaged": averaged,
                "log": asdict(stage),
            }, ckpt_path)
    with torch.no_grad():
        for param, avg in zip(params, averaged, strict=True):
            param.copy_(avg)
    return text_encoder.eval(), unet.eval(), stage


# ---------------------------------------------------------------------------------------
# Stage 3b: decoder


def finetune_decoder(config: TrainConfig, vae: AutoencoderKL, work: Path, log: Log = _print_log) -> StageLog:
    """Sharpen the decoder (see ``TrainConfig.decoder_steps``) in place, resumably."""
    if config.decoder_steps <= 0:
        return StageLog()

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        rng = random.Random(step_seed(config.seed, "decoder", step))
        width, height = _choose_size(rng, config)
        scenes = [sample_scene(rng, width, height) for _ in range(config.vae_batch)]
        images = scenes_to_tensor(scenes).to(config.device)
        gen = generator(config.seed, "decoder-noise", step)
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.mean
            n = latents.shape[0]
            # One sample in four stays as the encoder made it.
            keep = torch.rand(n, generator=gen) < 0.25
            sigma = torch.where(keep, torch.zeros(n), torch.rand(n, generator=gen) * DECODER_BLUR_MAX)
            amount = torch.where(keep, torch.zeros(n), torch.rand(n, generator=gen) * DECODER_NOISE_MAX)
            sigma, amount = sigma.to(config.device), amount.to(config.device)
            noisy = _blur(latents, sigma) + amount.view(-1, 1, 1, 1) * latents.std() * torch.randn(
                latents.shape, generator=gen
            ).to(config.device)
        region = torch.from_numpy(shape_region(scenes))[:, None].to(config.device) if config.vae_shape_loss_weight else None
        return noisy, images, region

    stage, _ = tune_decoder_steps(
        vae, name="decoder", steps=config.decoder_steps, lr=config.decoder_lr, warmup=config.warmup,
        ckpt_path=work / "decoder.ckpt", checkpoint_every=config.checkpoint_every, batch=batch,
        region_weight=config.vae_shape_loss_weight, log=log,
    )
    return stage


# ---------------------------------------------------------------------------------------
# Stage 4: export


def assemble_pipeline(
    *, vae: AutoencoderKL, text_encoder: CLIPTextModel, unet: UNet2DConditionModel, scale: float
) -> StableDiffusionPipeline:
    """The trained parts as the standard text-to-image pipeline."""
    vae.register_to_config(scaling_factor=scale)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(),
        unet=unet,
        scheduler=build_scheduler(),  # type: ignore[arg-type]  # any diffusers scheduler works
        # diffusers annotates these as required but documents None as "not used";
        # moderation is the worker's own step, not the pipeline's.
        safety_checker=None,  # type: ignore[arg-type]
        feature_extractor=None,  # type: ignore[arg-type]
        image_encoder=None,  # type: ignore[arg-type]
        requires_safety_checker=False,
    )


def export_pipeline(out: Path, pipe: StableDiffusionPipeline, figures: dict[str, Any]) -> StableDiffusionPipeline:
    """Save the pipeline as a diffusers folder (``.safetensors``) with ``training.json``."""
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "training.json").write_text(json.dumps(figures, indent=2) + "\n")
    return pipe


def export_preview(config: TrainConfig, out: Path, work: Path, log: Log = _print_log) -> int:
    """Export the averaged weights of a run as they stand at its last checkpoint, training
    nothing (a run in progress goes on undisturbed), so that ``bench/model_quality.py`` can
    measure it before it ends. Returns the UNet step the preview was taken at.

    Raises:
        ConfigMismatchError: ``work`` holds a run made with other settings.
        FileNotFoundError: the run has not reached the UNet stage yet.
    """
    if json.loads((work / "config.json").read_text()) != config.result_fields():
        raise ConfigMismatchError(f"{work} holds a run with other settings; give the same options as the run")
    if not (work / "unet.ckpt").exists():
        raise FileNotFoundError(f"{work} has no UNet checkpoint yet")
    vae, _ = train_vae(config, work, log)
    latent_sets, scale, _ = encode_latents(config, vae, work, log)
    text_encoder, unet, unet_log = train_denoiser(config, latent_sets, scale, work, log, stop_after=1)
    figures = {"config": config.to_json(), "preview_at_unet_step": unet_log.steps}
    pipe = assemble_pipeline(vae=vae, text_encoder=text_encoder, unet=unet, scale=scale)
    export_pipeline(out, pipe, figures)
    log(f"exported the weights of UNet step {unet_log.steps} to {out}")
    return unet_log.steps


def train(
    config: TrainConfig, out: Path, work: Path, log: Log = _print_log, *, stop_after: int | None = None
) -> dict[str, Any] | None:
    """Run (or resume) every stage and export to ``out``.

    Returns:
        The figures written to ``training.json``, or None when ``stop_after`` stopped the
        UNet stage early (nothing exported).

    Raises:
        ConfigMismatchError: ``work`` holds a run made with other settings.
    """
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "config.json"
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if saved != config.result_fields():
            changed = sorted(k for k in saved.keys() | config.result_fields().keys()
                             if saved.get(k) != config.result_fields().get(k))
            raise ConfigMismatchError(
                f"{work} holds a run with other settings ({', '.join(changed)}); use another --work"
            )
    else:
        config_path.write_text(json.dumps(config.result_fields(), indent=2) + "\n")

    vae, vae_log = train_vae(config, work, log)
    latent_sets, scale, latent_seconds = encode_latents(config, vae, work, log)
    seconds_file = work / "latents-seconds.json"
    if not seconds_file.exists():
        seconds_file.write_text(json.dumps(latent_seconds))
    latent_seconds = float(json.loads(seconds_file.read_text()))
    log(f"latents: scaling factor {scale:.4f}")
    text_encoder, unet, unet_log = train_denoiser(config, latent_sets, scale, work, log, stop_after=stop_after)
    if unet_log.steps < config.unet_steps:
        return None
    decoder_log = finetune_decoder(config, vae, work, log)
    pipe = assemble_pipeline(vae=vae, text_encoder=text_encoder, unet=unet, scale=scale)
    own = own_latent_settings(config)
    own_log = tune_decoder(own, pipe, work / "own-latents", log)
    passes = []
    for index, small in enumerate(small_shape_settings(config)):
        passes.append((small, tune_decoder(small, pipe, work / f"own-latents-small-{index}", log,
                                           latents=work / "own-latents")))

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    figures: dict[str, Any] = {
        "config": config.to_json(),
        "torch_threads": torch.get_num_threads(),
        "vae": {"steps": vae_log.steps, "seconds": round(vae_log.seconds, 1),
                "final_loss": vae_log.final_loss(), "parameters": count(vae)},
        "latents": {"seconds": round(latent_seconds, 1), "scaling_factor": scale,
                    "scenes": {f"{w}x{h}": len(s.scenes) for (w, h), s in latent_sets.items()}},
        "unet": {"steps": unet_log.steps, "seconds": round(unet_log.seconds, 1),
                 "final_loss": unet_log.final_loss(), "parameters": count(unet),
                 "text_encoder_parameters": count(text_encoder)},
        "decoder": {"steps": decoder_log.steps, "seconds": round(decoder_log.seconds, 1),
                    "final_loss": decoder_log.final_loss()},
        "own_latent_decoder": figures_of(own, own_log),
        "small_shape_decoder": [figures_of(small, small_log) for small, small_log in passes],
        "total_seconds": round(vae_log.seconds + latent_seconds + unet_log.seconds + decoder_log.seconds
                               + own_log.latent_seconds + own_log.decoder.seconds
                               + sum(done.latent_seconds + done.decoder.seconds for _, done in passes), 1),
        "loss_every_steps": LOG_EVERY,
        "vae_losses": [round(v, 6) for v in vae_log.losses],
        "unet_losses": [round(v, 5) for v in unet_log.losses],
    }
    export_pipeline(out, pipe, figures)
    log(f"exported to {out}: {figures['total_seconds']:.0f} s of training")
    return figures


def own_latent_settings(config: TrainConfig) -> OwnLatents:
    """The last stage's settings for a run of ``config`` (its scenes, sizes and seed)."""
    base = OwnLatents()
    return replace(
        base, steps=config.own_latent_steps, seed=config.seed, sizes=config.sizes_trained,
        rect_fraction=config.rect_fraction, warmup=config.warmup, checkpoint_every=config.checkpoint_every,
        device=config.device,
        native_scenes=min(base.native_scenes, config.square_count), other_scenes=min(base.other_scenes, config.rect_count),
    )


def small_shape_settings(config: TrainConfig) -> list[OwnLatents]:
    """The further own-latent passes of a run of ``config``: each on the decoder the pass
    before left (already wide: no widening) and the first pass's latents, with text-to-image
    pictures of small shapes added, each at its own (lower) learning rate."""
    first = own_latent_settings(config)
    return [replace(first, steps=steps, small_scenes=times * first.native_scenes, decoder_width=1, lr=lr)
            for steps, times, lr in config.small_shape_passes]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, Path, Path, int, bool]:
    """Parse the command line into a config, the output and work folders and a thread count."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m gpu_worker.training.train",
        description="Train the built-in shapes model (resumable: rerun the same command).",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the diffusers model")
    parser.add_argument("--work", type=Path, default=Path("data/shapes-training"),
                        help="checkpoints and encoded latents (default: data/shapes-training)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--preview", action="store_true",
                        help="export the run's weights at its last checkpoint to --out and stop (no training)")
    parser.add_argument("--vae-channels", type=_ints, default=defaults.sizes.vae_channels)
    parser.add_argument("--unet-channels", type=_ints, default=defaults.sizes.unet_channels)
    parser.add_argument("--text-width", type=int, default=defaults.sizes.text_width)
    parser.add_argument("--text-layers", type=int, default=defaults.sizes.text_layers)
    parser.add_argument("--unet-text-time", action=argparse.BooleanOptionalAction,
                        default=defaults.sizes.unet_text_time,
                        help="condition every UNet block on the pooled prompt (see ModelSizes)")
    skip = {"sizes", "sizes_trained"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        value = getattr(defaults, f.name)
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(value), default=value,
                            help=f"(default {value})")
    args = parser.parse_args(argv)
    sizes = ModelSizes(args.vae_channels, args.unet_channels, args.text_width, args.text_layers,
                       args.unet_text_time)
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in skip}
    config = replace(defaults, sizes=sizes, **values)
    return config, args.out, args.work, args.threads, args.preview


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    config, out, work, threads, preview = parse_args(argv)
    torch.set_num_threads(threads)
    try:
        if preview:
            export_preview(config, out, work)
        else:
            train(config, out, work)
    except ConfigMismatchError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
