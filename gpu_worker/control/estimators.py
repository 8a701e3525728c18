"""Depth maps for ``--cn depth``: any ``transformers`` depth-estimation model (DPT, Depth
Anything...) from a local folder a model entry names (``depth_estimator`` in models.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


class DepthEstimator:
    """Turns a picture into a depth map: near is white, far is black (what depth ControlNets
    were trained on), at the picture's size."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def load(cls, folder: Path) -> DepthEstimator:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        processor = AutoImageProcessor.from_pretrained(str(folder))
        model = AutoModelForDepthEstimation.from_pretrained(str(folder), use_safetensors=True)
        return cls(model, processor)

    @torch.no_grad()
    def __call__(self, picture: Image.Image) -> Image.Image:
        rgb = picture.convert("RGB")
        inputs = self.processor(images=rgb, return_tensors="pt").to(self.model.device)
        depth = self.model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(
            depth[:, None].float(), size=(rgb.height, rgb.width), mode="bicubic", align_corners=False
        )[0, 0]
        low, high = float(depth.min()), float(depth.max())
        scaled = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
        gray = (scaled.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), "RGB")


def write_tiny_depth_estimator(out: Path, *, seed: int = 0) -> Path:
    """A tiny DPT depth estimator with random weights (the real classes, test sizes)."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5],
        head_in_index=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config)
    model.save_pretrained(str(out))
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(str(out))
    return out
