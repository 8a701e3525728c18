"""Train the built-in ``shapes`` model's canny ControlNet, resumably.

``python -m gpu_worker.training.control --out gpu_worker/builtin/shapes/controlnet-canny``
copies the shipped UNet's encoder into a diffusers ``ControlNetModel`` (its conditioning
embedding downsamples by 4, the VAE's factor) and trains it, with the UNet, text encoder
and VAE frozen, to predict the same velocity as the UNet from the Canny edges of the scene
(:func:`gpu_worker.control.preprocess.canny`). Captions leave the position out half the
time and are empty a fifth of the time, so the edges, not the words, decide where the shape
goes. Scenes of every training size are encoded once (``--work``); a checkpoint every 200
steps lets a stopped run resume. ``controlnet.json`` beside the weights records the run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from gpu_worker.control.preprocess import canny
from gpu_worker.training import dataset
from gpu_worker.training.checkpoints import load_checkpoint, save_checkpoint
from gpu_worker.training.dataset import TRAIN_SIZES, Scene, caption, draw_scene, training_scenes

CONDITIONING_CHANNELS = (16, 32, 64)
"""The conditioning embedding's widths: two stride-2 convolutions take a 64x64 control
image to the 16x16 latent grid."""


def controlnet_from_unet(unet: UNet2DConditionModel) -> ControlNetModel:
    """A ControlNet with the UNet's encoder weights (and its text pooling's head count)."""
    shaped = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS, load_weights_from_unet=False
    )
    config = dict(shaped.config)
    heads = unet.config.get("addition_embed_type_num_heads")
    if heads is not None:
        config["addition_embed_type_num_heads"] = heads
    net = ControlNetModel.from_config(config)
    net.conv_in.load_state_dict(unet.conv_in.state_dict())
    net.time_proj.load_state_dict(unet.time_proj.state_dict())
    net.time_embedding.load_state_dict(unet.time_embedding.state_dict())
    if getattr(unet, "add_embedding", None) is not None and hasattr(net, "add_embedding"):
        net.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    net.down_blocks.load_state_dict(unet.down_blocks.state_dict())
    net.mid_block.load_state_dict(unet.mid_block.state_dict())
    return net


def control_tensor(scenes: list[Scene]) -> torch.Tensor:
    """Canny edges of the drawn scenes, ``(N, 3, H, W)`` in [0, 1] (what the pipeline feeds)."""
    edges = [np.asarray(canny(draw_scene(s)), dtype=np.float32) / 255.0 for s in scenes]
    return torch.from_numpy(np.stack(edges)).permute(0, 3, 1, 2).contiguous()


def _encode(pipe: object, scenes: list[Scene]) -> torch.Tensor:
    vae = pipe.vae  # type: ignore[attr-defined]
    out = []
    with torch.no_grad():
        for start in range(0, len(scenes), 64):
            chunk = scenes[start : start + 64]
            pixels = torch.from_numpy(np.stack([np.asarray(draw_scene(s), dtype=np.float32) for s in chunk]))
            pixels = pixels.permute(0, 3, 1, 2) / 127.5 - 1.0
            out.append(vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


def _caption(scene: Scene, rng: random.Random) -> str:
    """A training caption: empty a fifth of the time, and without its position half the time
    (so the edges, not the words, learn to decide where the shape goes)."""
    if rng.random() < 0.2:
        return ""
    text = caption(scene, rng, drop_probability=0.25)
    if rng.random() < 0.5:
        for phrase in _POSITION_PHRASES:
            text = text.replace(phrase, "")
        text = " ".join(text.replace(" ,", ",").split()).strip(" ,")
    return text


_POSITION_PHRASES = sorted(
    (p for phrases in dataset._POSITION_PHRASES.values() for p in phrases),
    key=len,
    reverse=True,
)


def train(
    model_dir: Path, out: Path, work: Path, *, steps: int, batch: int, per_size: int, lr: float, seed: int
) -> dict[str, object]:
    """Train (or resume) the ControlNet and save it to ``out``; return the run's figures."""
    from diffusers import StableDiffusionPipeline

    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, safety_checker=None)
    unet, text_encoder, tokenizer = pipe.unet.eval(), pipe.text_encoder.eval(), pipe.tokenizer
    for module in (unet, text_encoder, pipe.vae):
        module.requires_grad_(False)
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / "control-data.pt"
    if data_path.exists():
        data = torch.load(data_path, map_location="cpu", weights_only=False)
    else:
        data = {}
        for width, height in TRAIN_SIZES:
            scenes = training_scenes(per_size, seed=seed + 17, width=width, height=height)
            data[(width, height)] = {
                "scenes": [_scene_dict(s) for s in scenes],
                "latents": _encode(pipe, scenes).half(),
                "control": control_tensor(scenes).half(),
            }
        torch.save(data, data_path)
    prepared_s = time.perf_counter() - started
    sizes = list(data)
    net = controlnet_from_unet(unet)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    alpha_bar = pipe.scheduler.alphas_cumprod.float()
    checkpoint = work / "controlnet.pt"
    first, losses, seconds = load_checkpoint(checkpoint, net, optimizer)
    net.train()
    window: list[float] = []
    tick = time.perf_counter()
    for step in range(first, steps):
        rng = random.Random(f"control:{seed}:{step}")
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        size = sizes[0] if rng.random() < 0.6 else rng.choice(sizes[1:])
        chunk = data[size]
        index = torch.tensor([rng.randrange(len(chunk["scenes"])) for _ in range(batch)])
        scenes = [_scene(chunk["scenes"][int(i)]) for i in index]
        captions = [_caption(s, rng) for s in scenes]
        clean = chunk["latents"][index].float()
        cond = chunk["control"][index].float()
        noise = torch.randn(clean.shape, generator=gen)
        t = torch.randint(0, alpha_bar.numel(), (batch,), generator=gen)
        a = alpha_bar[t].sqrt().view(-1, 1, 1, 1)
        s = (1.0 - alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
        noisy = a * clean + s * noise
        target = a * noise - s * clean
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        ids = tokenizer(
            captions,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            context = text_encoder(ids)[0]
        down, mid = net(noisy, t, context, controlnet_cond=cond, return_dict=False)
        prediction = unet(
            noisy, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        loss = F.mse_loss(prediction, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % 25 == 0:
            losses.append(round(sum(window) / len(window), 5))
            window = []
            print(
                f"step {step + 1}/{steps} loss {losses[-1]:.4f} "
                f"{(seconds + time.perf_counter() - tick) / (step + 1):.2f} s/step",
                flush=True,
            )
        if (step + 1) % 200 == 0 or step + 1 == steps:
            seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            save_checkpoint(checkpoint, net, optimizer, step=step + 1, losses=losses, seconds=seconds)
    net.eval().save_pretrained(str(out), safe_serialization=True)
    figures: dict[str, object] = {
        "steps": steps,
        "batch": batch,
        "scenes_per_size": per_size,
        "learning_rate": lr,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "preparing_seconds": round(prepared_s, 1),
        "training_seconds": round(seconds, 1),
        "loss_every_25_steps": losses,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    (out / "controlnet.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _scene_dict(scene: Scene) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(scene, f.name) for f in fields(scene)}


def _scene(raw: dict[str, object]) -> Scene:
    return Scene(**raw)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path(__file__).resolve().parents[1] / "builtin" / "shapes"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("data/controlnet-training"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--per-size", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    figures = train(
        args.model,
        args.out,
        args.work,
        steps=args.steps,
        batch=args.batch,
        per_size=args.per_size,
        lr=args.lr,
        seed=args.seed,
    )
    print(json.dumps({k: v for k, v in figures.items() if k != "loss_every_25_steps"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
