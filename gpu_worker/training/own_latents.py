"""The last stage of the ``shapes`` recipe: the VAE's decoder learns to draw the true scene
from the latents the model's own UNet makes of it.

The decoder stage before it (:func:`gpu_worker.training.train.finetune_decoder`) sharpens the
decoder on the encoder's latents blurred and noised, a guess at how the UNet's come out. Here
the UNet itself makes them: each training scene is encoded, noised to a random strength
(:attr:`OwnLatents.strength`: the layout stays, the outline is drawn again) and denoised by the
trained text encoder and UNet with the shipped sampler, guidance and the scene's caption,
exactly as img2img does; the decoder learns to map those latents back to the scene. With
:attr:`OwnLatents.text_share`, some chunks are drawn from pure noise instead (text-to-image,
what a ``/imagine`` makes): their target is the scene redrawn where the UNet put its shape (the
box read off the decoded picture) with the prompted class, so the decoder learns to draw a
crisp square where the UNet drew the soft-cornered one it draws for "square"; with
:attr:`OwnLatents.decoder_width` the decoder is first made wider (:func:`gpu_worker.training.components.widen_vae`), and
:attr:`OwnLatents.class_weight` weighs the pixels where the shape classes differ. A quarter
of each batch keeps the decoder stage's blurred encoder latents, so that what the encoder
makes (img2img, inpainting, upscales) still decodes. The encoder, UNet and text encoder do not
change.

``python -m gpu_worker.training.own_latents --model DIR --out DIR [--work DIR] [--steps N]``
applies the stage to a trained model folder (how the shipped model's last stage was run on
its earlier weights); :func:`gpu_worker.training.train.train` runs it after the decoder stage.
It resumes where it stopped, as every stage does.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpu_worker.training.components import widen_vae
from gpu_worker.training.dataset import (
    COLOURS,
    POSITIONS,
    SIZES,
    TRAIN_SIZES,
    Scene,
    caption,
    class_region,
    coverage_box,
    training_scenes,
)
from gpu_worker.training.steps import (
    DECODER_BLUR_MAX,
    DECODER_NOISE_MAX,
    Log,
    StageLog,
    blur,
    generator,
    load_checkpoint,
    print_log,
    save_atomic,
    scenes_to_tensor,
    step_seed,
    tune_decoder_steps,
)

Size = tuple[int, int]


@dataclass(frozen=True, slots=True)
class OwnLatents:
    """The stage's settings (the defaults made the shipped model's decoder)."""

    steps: int = 3000
    lr: float = 5e-4
    warmup: int = 50
    batch: int = 16
    encoder_share: float = 0.25
    """Fraction of each batch on the encoder's latents, blurred and noised as in the decoder stage."""
    native_scenes: int = 4096
    other_scenes: int = 512
    """Scenes denoised by the UNet at the native size and at each other training size."""
    strength: tuple[float, float] = (0.1, 0.45)
    """The img2img strength of each chunk of scenes is drawn from this range."""
    text_share: float = 0.5
    """Fraction of the chunks of 64 scenes made from pure noise with the full caption
    (text-to-image) instead of img2img; each target is the scene redrawn at the box the UNet
    drew (:func:`redrawn`); pictures that miss the named place or size are left out."""
    small_scenes: int = 0
    """Further native-size scenes with small shapes only, all drawn from noise (text-to-image),
    added to the native set: the small square is the shape the decoder draws worst (3.5 latent
    pixels across), and a text-to-image chunk holds few of them."""
    decoder_width: int = 2
    """The decoder's channels are multiplied by this before the stage (:func:`~gpu_worker.training.components.widen_vae`; 1:
    as trained): the stage's 16- and 32-channel decoder fits a small square's corners poorly
    even on its own training pairs (RESULTS.md, w1)."""
    class_weight: float = 10.0
    """Extra weight of the squared error on the pixels where the shape classes differ
    (:func:`gpu_worker.training.dataset.class_region`: a square's corners, a circle's rim);
    0 weighs every pixel alike."""
    class_l1: bool = False
    """Weigh the absolute error there instead of the squared one (the decoder commits to the
    likelier shape instead of drawing between two; :func:`tune_decoder_steps`)."""
    denoise_steps: int = 20
    guidance: float = 3.0
    sizes: tuple[Size, ...] = TRAIN_SIZES
    rect_fraction: float = 0.25
    seed: int = 0
    checkpoint_every: int = 25
    device: str = "cpu"

    def result_fields(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        data.pop("checkpoint_every")
        data.pop("device")
        return data


@dataclass(slots=True)
class OwnLatentLog:
    """The stage's figures: seconds making the latents, then the decoder's steps."""

    latent_seconds: float = 0.0
    decoder: StageLog = field(default_factory=StageLog)


CHUNK = 64
"""Scenes denoised in one pipeline call (one img2img strength, or text-to-image, per chunk)."""

PLACE_TOLERANCE = 0.12
"""How far (fraction of a side) a text-to-image picture's shape may sit from its named place."""
EXTENT_RANGE = (0.6, 1.5)
"""The range of a text-to-image shape's side, relative to its named size, that is kept."""


def redrawn(scene: Scene, pixels: np.ndarray) -> Scene | None:
    """``scene`` moved to where a picture of it shows its shape, or None where the picture
    does not show it at the named place and size.

    Args:
        scene: what the picture was prompted with (its class, colours, place and size).
        pixels: the picture, ``(H, W, 3)`` RGB in 0..255.

    The box is read as the benchmark reads one: each pixel's coverage is its share of the
    way from the background's colour to the shape's, and the box spans the columns and rows
    that some pixel covers, weighted by their largest coverage.
    """
    background = np.asarray(COLOURS[scene.background], dtype=np.float32)
    axis = np.asarray(COLOURS[scene.colour], dtype=np.float32) - background
    cover = np.clip(((np.asarray(pixels, dtype=np.float32) - background) @ axis) / float(axis @ axis), 0.0, 1.0)
    box_w, box_h, cx, cy = coverage_box(cover)
    if box_w < 2 or box_h < 2:
        return None
    height, width = cover.shape
    fx, fy = POSITIONS[scene.position]
    extent = (box_w + box_h) / 2
    named = SIZES[scene.size] * min(width, height)
    if abs(cx / width - fx) > PLACE_TOLERANCE or abs(cy / height - fy) > PLACE_TOLERANCE:
        return None
    if not EXTENT_RANGE[0] <= extent / named <= EXTENT_RANGE[1]:
        return None
    return replace(scene, cx=cx, cy=cy, extent=extent)


def own_latents(
    settings: OwnLatents, pipe: Any, size: Size, work: Path, log: Log = print_log, *, small: bool = False
) -> tuple[list[Scene | None], torch.Tensor, float]:
    """The targets of ``size`` and the UNet's latents of them (unscaled, float16), made once
    and kept in ``work``; returns the targets (the training scenes, redrawn where the UNet drew
    from noise; None where such a picture was left out), the latents and the seconds spent here.
    With ``small``, the :attr:`OwnLatents.small_scenes` set instead, all drawn from noise."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import (
        StableDiffusionImg2ImgPipeline,
    )

    width, height = size
    if small:
        count = settings.small_scenes
        drawn = training_scenes(4 * count, seed=settings.seed + 1, width=width, height=height)
        scenes = [scene for scene in drawn if scene.size == "small"][:count]
        count = len(scenes)
    else:
        count = settings.native_scenes if size == settings.sizes[0] else settings.other_scenes
        scenes = training_scenes(count, seed=settings.seed, width=width, height=height)
    path = work / f"own-latents-{width}x{height}{f'-small{count}' if small else ''}.pt"
    stored = load_checkpoint(path)
    if stored is not None:
        return _targets(scenes, stored), stored["latents"], 0.0
    # A smaller small-shape set holds the first chunks of this one (the same scenes, captions and
    # seeds): they are read back, not made again.
    prefix = _smaller_set(work, width, height, count) if small else None
    started = time.perf_counter()
    img2img = StableDiffusionImg2ImgPipeline(**{name: pipe.components[name] for name in (
        "vae", "text_encoder", "tokenizer", "unet", "scheduler", "safety_checker", "feature_extractor", "image_encoder",
    )}, requires_safety_checker=False)
    img2img.set_progress_bar_config(disable=True)
    rng = random.Random(step_seed(settings.seed, "own-latents-small" if small else "own-latents", width, height))
    chunks, boxes = ([prefix["latents"]], prefix["boxes"].tolist()) if prefix else ([], [])
    for start in range(0, count, CHUNK):
        chunk = scenes[start : start + CHUNK]
        # Drawn only when asked for, so that runs without it draw the numbers they always did.
        text = small or (settings.text_share > 0 and rng.random() < settings.text_share)
        strength = 1.0 if text else rng.uniform(*settings.strength)
        generators = [torch.Generator("cpu").manual_seed(rng.randrange(1 << 30)) for _ in chunk]
        prompts = [caption(scene, rng, drop_probability=0.0 if text else 0.1) for scene in chunk]
        if prefix is not None and start < prefix["latents"].shape[0]:
            continue
        with torch.no_grad():
            latents = img2img(
                prompt=prompts,
                image=(scenes_to_tensor(chunk) + 1) / 2, strength=strength,
                num_inference_steps=settings.denoise_steps, guidance_scale=settings.guidance,
                generator=generators, output_type="latent",
            ).images
            targets: list[Scene | None] = list(chunk)
            if text:
                pictures = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
                pixels = ((pictures.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).float().cpu().numpy()
                targets = [redrawn(scene, picture) for scene, picture in zip(chunk, pixels, strict=True)]
        chunks.append((latents / pipe.vae.config.scaling_factor).half().cpu())
        boxes += [(t.cx, t.cy, t.extent) if t is not None else (float("nan"),) * 3 for t in targets]
    stored = {"latents": torch.cat(chunks), "boxes": torch.tensor(boxes, dtype=torch.float64)}
    save_atomic(stored, path)
    kept = sum(1 for box in boxes if box[0] == box[0])
    log(f"own latents: denoised {count} {'small-shape ' if small else ''}scenes at {width}x{height} "
        f"({count - kept} text-to-image pictures left out)")
    return _targets(scenes, stored), stored["latents"], time.perf_counter() - started


def _smaller_set(work: Path, width: int, height: int, count: int) -> dict[str, torch.Tensor] | None:
    """The largest small-shape set of ``width`` x ``height`` kept in ``work`` with fewer than
    ``count`` scenes, whole chunks, or None."""
    found = []
    for path in work.glob(f"own-latents-{width}x{height}-small*.pt"):
        size = path.stem.rsplit("-small", 1)[1]
        if size.isdigit() and int(size) < count and int(size) % CHUNK == 0:
            found.append((int(size), path))
    return load_checkpoint(max(found)[1]) if found else None


def _targets(scenes: list[Scene], stored: dict[str, torch.Tensor]) -> list[Scene | None]:
    if "boxes" not in stored:  # made before text-to-image chunks existed: img2img only
        return list(scenes)
    return [
        None if box[0] != box[0] else replace(scene, cx=float(box[0]), cy=float(box[1]), extent=float(box[2]))
        for scene, box in zip(scenes, stored["boxes"].tolist(), strict=True)
    ]


def tune_decoder(
    settings: OwnLatents, pipe: Any, work: Path, log: Log = print_log, *, latents: Path | None = None
) -> OwnLatentLog:
    """Run (or resume) the stage on ``pipe`` (a ``StableDiffusionPipeline`` of the model),
    changing its VAE's decoder in place (or, with ``decoder_width``, replacing its VAE by a
    wider one). The UNet's latents are kept in ``latents`` (default: ``work``), so that a
    second pass can train on the first one's."""
    work.mkdir(parents=True, exist_ok=True)
    kept_in = latents or work
    kept_in.mkdir(parents=True, exist_ok=True)
    figures = OwnLatentLog()
    if settings.steps <= 0:
        return figures
    sets = {}
    for size in settings.sizes:
        scenes, made, seconds = own_latents(settings, pipe, size, kept_in, log)
        sets[size] = (scenes, made)
        figures.latent_seconds += seconds
    if settings.small_scenes:
        native = settings.sizes[0]
        scenes, made, seconds = own_latents(settings, pipe, native, kept_in, log, small=True)
        sets[native] = (sets[native][0] + scenes, torch.cat([sets[native][1], made]))
        figures.latent_seconds += seconds
    if settings.decoder_width > 1:
        pipe.register_modules(vae=widen_vae(pipe.vae, settings.decoder_width, settings.seed))
    vae = pipe.vae
    usable = {size: [i for i, target in enumerate(targets) if target is not None] for size, (targets, _) in sets.items()}
    for (width, height), found in usable.items():
        if not found:  # every chunk of this size was drawn from noise, and the UNet missed them all
            log(f"own latents: no usable picture at {width}x{height}; the stage trains on the other sizes")
    trained = [size for size in settings.sizes if usable[size]]
    if not trained:
        raise RuntimeError("no picture the UNet drew shows its shape where its caption says; "
                           "train the UNet further before this stage, or lower text_share")
    native, *others = trained
    encoded = max(1, round(settings.batch * settings.encoder_share))

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        rng = random.Random(step_seed(settings.seed, "own-decoder", step))
        size = rng.choice(others) if others and rng.random() < settings.rect_fraction else native
        targets, latents = sets[size]
        index = [usable[size][rng.randrange(len(usable[size]))] for _ in range(settings.batch)]
        chosen: list[Scene] = [targets[i] for i in index]  # type: ignore[misc]  # None is never usable
        images = scenes_to_tensor(chosen).to(settings.device)
        region = torch.from_numpy(class_region(chosen))[:, None].to(settings.device) if settings.class_weight else None
        gen = generator(settings.seed, "own-decoder-noise", step)
        with torch.no_grad():
            mean = vae.encode(images[:encoded]).latent_dist.mean
            sigma = (torch.rand(encoded, generator=gen) * DECODER_BLUR_MAX).to(settings.device)
            amount = (torch.rand(encoded, generator=gen) * DECODER_NOISE_MAX).to(settings.device)
            drawn = torch.randn(mean.shape, generator=gen).to(settings.device)
            mean = blur(mean, sigma) + amount.view(-1, 1, 1, 1) * mean.std() * drawn
            return torch.cat([mean, latents[index[encoded:]].float().to(settings.device)]), images, region

    stage, kept = tune_decoder_steps(
        vae, name="own-latent decoder", steps=settings.steps, lr=settings.lr, warmup=settings.warmup,
        ckpt_path=work / "own-decoder.ckpt", checkpoint_every=settings.checkpoint_every, batch=batch,
        region_weight=settings.class_weight, region_l1=settings.class_l1, extra={"latent_seconds": figures.latent_seconds}, log=log,
    )
    figures.latent_seconds = kept["latent_seconds"]
    figures.decoder = stage
    return figures


def figures_of(settings: OwnLatents, done: OwnLatentLog) -> dict[str, Any]:
    """The stage's entry in ``training.json``."""
    return {
        "config": settings.result_fields(),
        "latent_seconds": round(done.latent_seconds, 1),
        "steps": done.decoder.steps,
        "seconds": round(done.decoder.seconds, 1),
        "final_loss": done.decoder.final_loss(),
        "losses": [round(v, 6) for v in done.decoder.losses],
    }


def main(argv: list[str] | None = None) -> int:
    """``--model DIR --out DIR``: the model at DIR with this stage run on it, written to OUT."""
    defaults = OwnLatents()
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.training.own_latents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model folder (diffusers layout)")
    parser.add_argument("--out", type=Path, required=True, help="where the model with its new decoder goes")
    parser.add_argument("--work", type=Path, default=Path("data/own-latents"), help="latents and checkpoints")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--strength", default=",".join(str(v) for v in defaults.strength),
                        help="img2img strengths LOW,HIGH of the UNet's latents (default %(default)s)")
    parser.add_argument("--text-share", type=float, default=defaults.text_share,
                        help="fraction of the UNet's latents drawn from noise by text-to-image (default %(default)s)")
    parser.add_argument("--small-scenes", type=int, default=defaults.small_scenes,
                        help="further text-to-image scenes of small shapes at the native size (default %(default)s)")
    parser.add_argument("--decoder-width", type=int, default=defaults.decoder_width,
                        help="multiply the decoder's channels by this first (default %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--class-weight", type=float, default=defaults.class_weight,
                        help="extra weight of the pixels where the shape classes differ (default %(default)s)")
    parser.add_argument("--class-l1", action=argparse.BooleanOptionalAction, default=defaults.class_l1,
                        help="weigh the absolute error on those pixels instead of the squared one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where it runs (cuda on a GPU machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    low, high = (float(v) for v in args.strength.split(","))
    settings = replace(defaults, steps=args.steps, device=args.device, strength=(low, high), text_share=args.text_share,
                       class_weight=args.class_weight, class_l1=args.class_l1, small_scenes=args.small_scenes, decoder_width=args.decoder_width, lr=args.lr)
    config_path = args.work / "config.json"
    args.work.mkdir(parents=True, exist_ok=True)
    if config_path.exists() and json.loads(config_path.read_text()) != settings.result_fields():
        print(f"own_latents: {args.work} holds a run with other settings; use another --work", file=sys.stderr)
        return 2
    config_path.write_text(json.dumps(settings.result_fields(), indent=2) + "\n")
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(args.model), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(args.device)
    done = tune_decoder(settings, pipe, args.work)
    if args.out.resolve() != args.model.resolve():
        shutil.copytree(args.model, args.out, dirs_exist_ok=True)
    pipe.vae.save_pretrained(args.out / "vae", safe_serialization=True)
    # diffusers records the folder a model was loaded from; a shipped config names none.
    vae_config = args.out / "vae" / "config.json"
    vae_config.write_text(json.dumps({k: v for k, v in json.loads(vae_config.read_text()).items()
                                      if k != "_name_or_path"}, indent=2, sort_keys=True) + "\n")
    training = args.out / "training.json"
    record = json.loads(training.read_text()) if training.exists() else {}
    # A pass on small shapes goes on from a model that had the first pass: all stay on record.
    if settings.small_scenes:
        record["small_shape_decoder"] = [*record.get("small_shape_decoder", []), figures_of(settings, done)]
    else:
        record["own_latent_decoder"] = figures_of(settings, done)
    training.write_text(json.dumps(record, indent=2) + "\n")
    print_log(f"wrote {args.out}: decoder tuned {done.decoder.steps} steps on the UNet's own latents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
