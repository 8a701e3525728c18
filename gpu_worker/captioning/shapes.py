"""The ``shapes`` model's own captioner: a small convolutional classifier that reads a picture
of the kind the model draws back into the words its prompts use.

The shipped ``shapes`` model draws one flat shape in a named colour, size and place on a
background of another named colour (:mod:`gpu_worker.training.dataset`). A general
captioner (BLIP, Florence-2) would need weights this project cannot download and would
describe such a picture in words the model never learnt, so the model ships a reader of its
own, trained on the same synthetic scenes (``python -m gpu_worker.training.captioner``).

The network has one head per attribute (background colour, shape colour, class, position,
size) over a shared convolutional trunk. Its four descriptions are the four most probable
whole scenes (the product of the heads' probabilities, with the shape's colour never the
background's), each written in the phrasing the model's captions use, so that imagining a
description draws the same scene again.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from gpu_worker.training.dataset import COLOURS, POSITIONS, SHAPES, SIZES, Scene

MODEL_TYPE = "imaginarium-shapes-captioner"
"""``model_type`` in the folder's ``config.json``: how a captioner folder is recognised as this kind."""
INPUT_SIDE = 64
"""Every picture is resized to this square before it is read (positions are fractions of
the sides, so the scene's layout survives the resize)."""

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "background": tuple(COLOURS),
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "position": tuple(POSITIONS),
    "size": tuple(SIZES),
}
"""The heads and the names each one chooses between, in output order."""

POSITION_WORDS: dict[str, str] = {
    "top left": "in the top left corner",
    "top": "at the top",
    "top right": "in the top right corner",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "in the bottom left corner",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
"""How a description says each position (phrases the model's training captions use)."""


@dataclass(frozen=True, slots=True)
class CaptionerConfig:
    """The network's widths (written to ``config.json`` beside the weights)."""

    channels: tuple[int, ...] = (32, 64, 96, 128)
    """Convolution widths, each stage halving the side (64 -> 32 -> 16 -> 8 -> 4)."""
    hidden: int = 256
    model_type: str = MODEL_TYPE
    attributes: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in ATTRIBUTES.items()}
    )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptionerConfig:
        return cls(
            channels=tuple(int(c) for c in data["channels"]),
            hidden=int(data["hidden"]),
            model_type=str(data["model_type"]),
            attributes={str(k): [str(n) for n in v] for k, v in data["attributes"].items()},
        )


class ShapesCaptionerNet(nn.Module):
    """Convolutional trunk and one linear head per attribute; logits per head."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = 3
        for out in config.channels:
            layers += [
                nn.Conv2d(width, out, 3, padding=1),
                nn.GroupNorm(8, out),
                nn.SiLU(),
                nn.Conv2d(out, out, 3, stride=2, padding=1),
                nn.SiLU(),
            ]
            width = out
        self.trunk = nn.Sequential(*layers)
        side = INPUT_SIDE // 2 ** len(config.channels)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, config.hidden), nn.SiLU())
        self.heads = nn.ModuleDict(
            {name: nn.Linear(config.hidden, len(names)) for name, names in config.attributes.items()}
        )

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.neck(self.trunk(pixels))
        return {name: head(features) for name, head in self.heads.items()}


def to_pixels(images: list[Image.Image]) -> torch.Tensor:
    """``(N, 3, 64, 64)`` in [-1, 1]: each image converted to RGB and resized (bilinear)."""
    arrays = [
        np.asarray(
            image.convert("RGB").resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR), dtype=np.float32
        )
        for image in images
    ]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch / 127.5 - 1.0


def describe_scene(attributes: dict[str, str]) -> str:
    """The description of one scene, in the phrasing of the model's captions
    (``"a small red circle in the top left corner on a blue background"``)."""
    noun = f"{attributes['size']} {attributes['colour']} {attributes['shape']}"
    return f"a {noun} {POSITION_WORDS[attributes['position']]} on a {attributes['background']} background"


def scene_attributes(scene: Scene) -> dict[str, str]:
    """A ground-truth scene's named attributes, as the heads name them."""
    return {
        "background": scene.background,
        "colour": scene.colour,
        "shape": scene.shape,
        "position": scene.position,
        "size": scene.size,
    }


def best_scenes(log_probs: dict[str, torch.Tensor], count: int, *, per_head: int = 3) -> list[dict[str, str]]:
    """The ``count`` most probable whole scenes of one image (heads' log-probabilities summed).

    Only each head's ``per_head`` likeliest names are combined, which is exact for the top
    few scenes (a scene outside them is less likely than one inside) and keeps the search at
    a few hundred combinations. A shape never has its background's colour.
    """
    names = list(log_probs)
    choices = []
    for name in names:
        values, indices = log_probs[name].topk(min(per_head, log_probs[name].numel()))
        choices.append([(float(v), int(i)) for v, i in zip(values, indices, strict=True)])
    scored = []
    for combo in itertools.product(*choices):
        picked = {name: ATTRIBUTES[name][index] for name, (_, index) in zip(names, combo, strict=True)}
        if picked["colour"] == picked["background"]:
            continue
        scored.append((sum(score for score, _ in combo), picked))
    scored.sort(key=lambda item: -item[0])
    return [picked for _, picked in scored[:count]]


class ShapesCaptioner:
    """Reads pictures of the ``shapes`` model's kind (see the module docstring)."""

    def __init__(self, net: ShapesCaptionerNet) -> None:
        self.net = net.eval()

    @classmethod
    def load(cls, folder: Path) -> ShapesCaptioner:
        """Load ``config.json`` and ``model.safetensors`` from ``folder``."""
        from safetensors.torch import load_file

        config = CaptionerConfig.from_json(json.loads((folder / "config.json").read_text()))
        net = ShapesCaptionerNet(config)
        state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        net.load_state_dict(state)
        return cls(net)

    def save(self, folder: Path) -> None:
        """Write the weights (float16: half the size, the same readings) and ``config.json``."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        data = asdict(self.net.config)
        data["channels"] = list(self.net.config.channels)
        (folder / "config.json").write_text(json.dumps(data, indent=2) + "\n")

    @torch.no_grad()
    def read(self, images: list[Image.Image]) -> list[dict[str, torch.Tensor]]:
        """Each image's log-probabilities per head."""
        logits = self.net(to_pixels(images))
        per_head = {name: torch.log_softmax(value.float(), dim=-1) for name, value in logits.items()}
        return [{name: value[i] for name, value in per_head.items()} for i in range(len(images))]

    def describe(self, image: Image.Image, *, count: int = 4, seed: int = 0) -> list[str]:
        """The ``count`` likeliest descriptions of ``image``, best first (``seed`` is unused:
        the reading is deterministic)."""
        del seed
        return [describe_scene(scene) for scene in best_scenes(self.read([image])[0], count)]


def exact_rate(
    captioner: ShapesCaptioner, scenes: list[Scene], images: list[Image.Image], batch: int = 256
) -> tuple[float, dict[str, float]]:
    """The share of images whose best description names every attribute right, and each
    attribute's accuracy."""
    right = {name: 0 for name in ATTRIBUTES}
    exact = 0
    for start in range(0, len(images), batch):
        readings = captioner.read(images[start : start + batch])
        for scene, reading in zip(scenes[start : start + batch], readings, strict=True):
            truth = scene_attributes(scene)
            best = best_scenes(reading, 1)[0]
            hits = {name: best[name] == truth[name] for name in ATTRIBUTES}
            for name, hit in hits.items():
                right[name] += hit
            exact += all(hits.values())
    total = max(len(images), 1)
    return exact / total, {name: value / total for name, value in right.items()}
