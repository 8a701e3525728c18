"""Maps that need a model: depth for ``--cn depth`` (any ``transformers`` depth-estimation
model, DPT, Depth Anything...: ``depth_estimator`` in models.toml) and skeletons for ``--cn
pose`` (a ``transformers`` VitPose model: ``pose_estimator``), from local folders."""

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


COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6),
)  # fmt: skip
"""The COCO skeleton: pairs of the 17 keypoints (nose, eyes, ears, shoulders, elbows, wrists,
hips, knees, ankles) joined by a limb."""
LIMB_COLOURS: tuple[tuple[int, int, int], ...] = tuple(
    (
        int(255 * max(0.0, 1 - abs(h * 6 - 1))),
        int(255 * max(0.0, 1 - abs(h * 6 - 3))),
        int(255 * max(0.0, 1 - abs(h * 6 - 5))),
    )
    for h in (i / len(COCO_LIMBS) for i in range(len(COCO_LIMBS)))
)
"""A colour per limb around the hue circle, as OpenPose skeleton maps draw them."""
MIN_KEYPOINT_SCORE = 0.3


class PoseEstimator:
    """Turns a picture of a person into an OpenPose-style skeleton map (coloured limbs and
    white joints on black) with a ``transformers`` VitPose model. The whole picture is the
    person's box: one person who fills most of the frame is what it reads best."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def load(cls, folder: Path) -> PoseEstimator:
        from transformers import AutoProcessor, VitPoseForPoseEstimation

        processor = AutoProcessor.from_pretrained(str(folder))
        model = VitPoseForPoseEstimation.from_pretrained(str(folder), use_safetensors=True)
        return cls(model, processor)

    @torch.no_grad()
    def __call__(self, picture: Image.Image) -> Image.Image:
        from PIL import ImageDraw

        rgb = picture.convert("RGB")
        boxes = [[[0.0, 0.0, float(rgb.width), float(rgb.height)]]]
        inputs = self.processor(rgb, boxes=boxes, return_tensors="pt").to(self.model.device)
        found = self.processor.post_process_pose_estimation(self.model(**inputs), boxes=boxes)[0][0]
        points = found["keypoints"].float().cpu().numpy()
        scores = found["scores"].float().cpu().numpy()
        canvas = Image.new("RGB", rgb.size, (0, 0, 0))
        draw = ImageDraw.Draw(canvas)
        width = max(2, round(min(rgb.size) / 80))
        for (a, b), colour in zip(COCO_LIMBS, LIMB_COLOURS, strict=True):
            if max(a, b) < len(points) and min(scores[a], scores[b]) >= MIN_KEYPOINT_SCORE:
                draw.line([tuple(points[a]), tuple(points[b])], fill=colour, width=width)
        for (x, y), score in zip(points, scores, strict=True):
            if score >= MIN_KEYPOINT_SCORE:
                draw.ellipse((x - width, y - width, x + width, y + width), fill=(255, 255, 255))
        return canvas


def write_tiny_pose_estimator(out: Path, *, seed: int = 0) -> Path:
    """A tiny VitPose (17 COCO keypoints) with random weights (the real classes, test sizes)."""
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    backbone = VitPoseBackboneConfig(  # type: ignore[call-arg]
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=[64, 48],
        patch_size=[8, 8],
        out_indices=[2],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17))  # type: ignore[call-arg]
    model.save_pretrained(str(out))
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(str(out))
    return out
