"""``--sref`` / ``--cref`` on the worker: IP-Adapters loaded for a job, or image prompts.

:class:`References` holds a job's fetched reference pictures. For each kind (style,
character) whose model entry names an IP-Adapter (:mod:`core.references`), :meth:`applied`
loads the adapters into the pipeline for the one render (with the CLIP image encoder they
share, kept loaded between jobs), sets their scales from ``--sw`` / ``--cw``, yields the
``ip_adapter_image`` argument, and unloads them afterwards, so the next job renders as if
they had never been there. A kind without an adapter falls back to image prompts
(:meth:`fallback`): the pictures join the prompt's own, weighed as ``--iw`` by
:func:`core.references.fallback_image_weight`, and the image's recipe says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from core.models import ModelEntry
from core.references import (
    CHARACTER_WEIGHT_MAX,
    STYLE_WEIGHT_MAX,
    AdapterEntry,
    character_scale,
    fallback_image_weight,
    image_prompt_scale,
    style_scale,
)
from core.spec import JobSpec
from gpu_worker.failures import JobRejected

_encoders: dict[str, Any] = {}
_encoders_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class References:
    """A job's reference pictures and the model's adapters for them."""

    entry: ModelEntry
    style: list[Image.Image] = field(default_factory=list)
    character: list[Image.Image] = field(default_factory=list)
    image_prompts: list[Image.Image] = field(default_factory=list)
    """The prompt's own pictures, read through the style adapter (the renderer puts them here
    only when the model has one)."""

    def _through_adapters(self, spec: JobSpec) -> list[tuple[str, AdapterEntry, list[Image.Image], float]]:
        chosen = []
        if self.style and self.entry.style_adapter is not None:
            chosen.append(
                ("Style reference", self.entry.style_adapter, self.style, style_scale(spec.style_weight))
            )
        if self.character and self.entry.character_adapter is not None:
            scale = character_scale(spec.character_weight)
            chosen.append(("Character reference", self.entry.character_adapter, self.character, scale))
        if self.image_prompts and self.entry.style_adapter is not None:
            scale = image_prompt_scale(spec.image_weight)
            chosen.append(("Image prompts", self.entry.style_adapter, self.image_prompts, scale))
        return chosen

    def fallback(self, spec: JobSpec) -> tuple[list[Image.Image], float | None, dict[str, object]]:
        """Pictures of the kinds without an adapter, to render from as image prompts; their
        ``--iw``; and what the recipe says of it."""
        pictures: list[Image.Image] = []
        weights: list[float] = []
        said: dict[str, object] = {}
        if self.style and self.entry.style_adapter is None:
            pictures += self.style
            weights.append(fallback_image_weight(spec.style_weight, STYLE_WEIGHT_MAX))
            said["Style reference"] = "image prompt (the model has no style adapter)"
        if self.character and self.entry.character_adapter is None:
            pictures += self.character
            weights.append(fallback_image_weight(spec.character_weight, CHARACTER_WEIGHT_MAX))
            said["Character reference"] = "image prompt (the model has no character adapter)"
        return pictures, (max(weights) if weights else None), said

    def said(self, spec: JobSpec) -> dict[str, object]:
        """What the recipe says of the references that go through adapters."""
        return {
            kind: f"IP-Adapter {adapter.weight_name} {scale:.2f}"
            for kind, adapter, _, scale in self._through_adapters(spec)
        }

    @contextmanager
    def applied(self, pipe: Any, spec: JobSpec) -> Iterator[dict[str, Any]]:
        """The adapters loaded into ``pipe`` for one render (see the module docstring)."""
        chosen = self._through_adapters(spec)
        if not chosen:
            yield {}
            return
        from gpu_worker.registry import check_file

        for _, adapter, _, _ in chosen:
            check_file(adapter.file, adapter.sha256, f"IP-Adapter {adapter.weight_name!r}")
        encoders = {adapter.image_encoder for _, adapter, _, _ in chosen}
        if len(encoders) > 1:
            raise JobRejected("this model's style and character adapters use different image encoders")
        _attach_encoder(pipe, next(iter(encoders)))
        pipe.load_ip_adapter(
            [str(a.folder) for _, a, _, _ in chosen],
            subfolder=[""] * len(chosen),
            weight_name=[a.weight_name for _, a, _, _ in chosen],
            image_encoder_folder=None,
        )
        try:
            pipe.set_ip_adapter_scale([scale for _, _, _, scale in chosen])
            yield {"ip_adapter_image": [[p.convert("RGB") for p in pictures] for _, _, pictures, _ in chosen]}
        finally:
            pipe.unload_ip_adapter()


def _attach_encoder(pipe: Any, folder: Path) -> None:
    """Give ``pipe`` the CLIP image encoder (cached per folder) and an image processor for it."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    with _encoders_lock:
        key = str(folder)
        if key not in _encoders:
            model = CLIPVisionModelWithProjection.from_pretrained(key, use_safetensors=True)
            _encoders[key] = model.to(device=pipe.device, dtype=pipe.dtype).eval()  # type: ignore[call-arg]
        encoder = _encoders[key]
    side = int(encoder.config.image_size)
    processor = CLIPImageProcessor(  # type: ignore[call-arg]
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    )
    pipe.register_modules(image_encoder=encoder, feature_extractor=processor)


def write_tiny_ip_adapter(pipe: Any, out: Path, *, seed: int = 0) -> tuple[Path, str, Path]:
    """A tiny IP-Adapter for a tiny SD 1.5 or SDXL pipeline (random weights, the layout
    diffusers' ``load_ip_adapter`` reads: ``image_proj.*`` and ``ip_adapter.N.to_k_ip/to_v_ip``)
    and a tiny CLIP image encoder; returns ``(folder, weight_name, image_encoder folder)``."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out.mkdir(parents=True, exist_ok=True)
    unet = pipe.unet
    cross = int(unet.config.cross_attention_dim)
    embed = 32
    channels = list(unet.config.block_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
                projection_dim=embed,
            )
        )
        state = {
            "image_proj.proj.weight": torch.randn(4 * cross, embed) * 0.5,
            "image_proj.proj.bias": torch.zeros(4 * cross),
            "image_proj.norm.weight": torch.ones(cross),
            "image_proj.norm.bias": torch.zeros(cross),
        }
        key_id = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            if name.startswith("mid_block"):
                hidden = channels[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(channels))[int(name.split(".")[1])]
            else:
                hidden = channels[int(name.split(".")[1])]
            state[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.5
            state[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.5
            key_id += 2
    encoder_dir = out / "image_encoder"
    encoder.save_pretrained(str(encoder_dir))
    name = "ip-adapter_tiny.safetensors"
    save_file(state, str(out / name))
    return out, name, encoder_dir
