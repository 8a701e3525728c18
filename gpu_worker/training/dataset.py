"""Synthetic captioned shapes: the training data of the built-in ``shapes`` model.

Every sample is one flat shape (circle, square or triangle) in one of eight named colours,
on a background of another named colour, at one of nine named positions and one of two
sizes, drawn with anti-aliased edges. Its :class:`Scene` is the ground truth, and captions
are made from it in several plain-English phrasings, some of which leave attributes out so
that the model learns what a prompt that does not name a colour (or a position...) means.

Everything is a pure function of a seed: the same seed gives the same scenes, pixels and
captions on every machine. A tenth of all attribute combinations (:func:`is_held_out`) never
appears in training; evaluation prompts (:func:`eval_pairs`) are drawn from those only, so
the benchmark measures whether the model composes what it learned rather than recalls it.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (30, 170, 60),
    "blue": (30, 70, 225),
    "purple": (140, 50, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
"""Named colours (sRGB) for shapes and backgrounds; far enough apart to name a pixel by nearest."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""Shape classes. Their fill ratios of the bounding box (pi/4, 1, 1/2) tell them apart."""

POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.27, 0.27),
    "top": (0.5, 0.27),
    "top right": (0.73, 0.27),
    "left": (0.27, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.73, 0.5),
    "bottom left": (0.27, 0.73),
    "bottom": (0.5, 0.73),
    "bottom right": (0.73, 0.73),
}
"""Named positions: the shape's centre as fractions of the image width and height."""

SIZES: dict[str, float] = {"small": 0.22, "large": 0.42}
"""Named sizes: the side of the shape's bounding box as a fraction of the image's shorter side."""

TRAIN_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (80, 48), (48, 80), (64, 48), (48, 64))
"""Image sizes ``(width, height)`` the model trains at: the square native size and the sizes
``core.sizes`` picks for 5:3, 3:5, 4:3 and 3:4 at a 64x64 pixel budget with 16-pixel steps."""

POSITION_JITTER = 0.03
"""Largest random offset of the shape's centre from its named position (fraction of a side)."""
SIZE_JITTER = 0.1
"""Largest relative change of the shape's size from its named size."""
SUPERSAMPLE = 4
"""Shapes are drawn this many times larger and box-filtered down, for anti-aliased edges."""

_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("in the top left corner", "in the top left", "at the top left", "top left"),
    "top right": ("in the top right corner", "in the top right", "at the top right", "top right"),
    "bottom left": ("in the bottom left corner", "in the bottom left", "at the bottom left", "bottom left"),
    "bottom right": ("in the bottom right corner", "in the bottom right", "at the bottom right", "bottom right"),
    "top": ("at the top", "at the top centre", "top"),
    "bottom": ("at the bottom", "at the bottom centre", "bottom"),
    "left": ("on the left", "at the left", "left"),
    "right": ("on the right", "at the right", "right"),
    "centre": ("in the centre", "in the center", "in the middle", "centred", "centre", "center"),
}
_SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_BACKGROUND_PHRASES: tuple[str, ...] = ("on a {} background", "on {}", "against a {} background")
_TAIL_BACKGROUND_PHRASES: tuple[str, ...] = ("{} background", "on {}", "{} backdrop")


@dataclass(frozen=True, slots=True)
class Scene:
    """The ground truth of one image: what is drawn, where and how big.

    ``cx``, ``cy`` and ``extent`` are the exact (jittered) centre and bounding-box side in
    pixels; the named attributes are what a caption may say.
    """

    shape: str
    colour: str
    background: str
    position: str
    size: str
    width: int
    height: int
    cx: float
    cy: float
    extent: float

    @property
    def combination(self) -> tuple[str, str, str, str, str]:
        """The named attributes, the unit that :func:`is_held_out` holds out."""
        return (self.shape, self.colour, self.background, self.position, self.size)


@dataclass(frozen=True, slots=True)
class EvalPair:
    """One held-out evaluation case: a full caption, the seed to render it with, its truth."""

    prompt: str
    seed: int
    scene: Scene


def vocabulary() -> list[str]:
    """Every word any caption can contain, for the tokenizer (one token per word)."""
    words: set[str] = {"a", "an", "with", "background", "backdrop", "shape", *SHAPES, *COLOURS}
    for phrases in _POSITION_PHRASES.values():
        for phrase in phrases:
            words.update(phrase.split())
    for size_words in _SIZE_WORDS.values():
        words.update(size_words)
    for template in (*_BACKGROUND_PHRASES, *_TAIL_BACKGROUND_PHRASES):
        words.update(w for w in template.split() if w != "{}")
    return sorted(words)


def is_held_out(combination: tuple[str, str, str, str, str]) -> bool:
    """Whether an attribute combination is reserved for evaluation (about one in ten).

    A stable hash (CRC-32 of the joined names), so the split is the same on every machine
    and in every Python process.
    """
    return zlib.crc32("|".join(combination).encode()) % 10 == 0


def sample_scene(rng: random.Random, width: int = 64, height: int = 64, *, held_out: bool = False) -> Scene:
    """Draw a random scene whose shape colour differs from its background.

    Args:
        rng: the source of randomness (the caller seeds it).
        width: image width in pixels.
        height: image height in pixels.
        held_out: draw from the held-out combinations (evaluation) instead of the rest (training).

    Returns:
        The scene, with its exact centre and size jittered around the named ones.
    """
    while True:
        shape = rng.choice(SHAPES)
        colour = rng.choice(list(COLOURS))
        background = rng.choice([c for c in COLOURS if c != colour])
        position = rng.choice(list(POSITIONS))
        size = rng.choice(list(SIZES))
        if is_held_out((shape, colour, background, position, size)) == held_out:
            break
    fx, fy = POSITIONS[position]
    extent = SIZES[size] * min(width, height) * (1 + rng.uniform(-SIZE_JITTER, SIZE_JITTER))
    cx = (fx + rng.uniform(-POSITION_JITTER, POSITION_JITTER)) * width
    cy = (fy + rng.uniform(-POSITION_JITTER, POSITION_JITTER)) * height
    return Scene(shape, colour, background, position, size, width, height, cx, cy, extent)


def draw_scene(scene: Scene) -> Image.Image:
    """Render a scene as an RGB image of ``scene.width`` x ``scene.height`` pixels."""
    s = SUPERSAMPLE
    image = Image.new("RGB", (scene.width * s, scene.height * s), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    half = scene.extent * s / 2
    cx, cy = scene.cx * s, scene.cy * s
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif scene.shape == "square":
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif scene.shape == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return image.resize((scene.width, scene.height), Image.Resampling.BOX)


def scene_array(scene: Scene) -> np.ndarray:
    """The scene's pixels as a ``(height, width, 3)`` uint8 array."""
    return np.asarray(draw_scene(scene), dtype=np.uint8)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def full_caption(scene: Scene, rng: random.Random) -> str:
    """A caption naming every attribute of ``scene``, in a randomly chosen phrasing."""
    return caption(scene, rng, drop_probability=0.0)


def caption(scene: Scene, rng: random.Random, *, drop_probability: float = 0.2) -> str:
    """A plain-English caption of ``scene`` in one of several phrasings.

    Each of colour, background, position and size is left out with ``drop_probability``
    (size twice as often: people rarely say it), so captions such as "a triangle" or
    "blue square on the left" teach the model what an unsaid attribute means.

    Examples: "a small red circle on a blue background, top left",
    "small green triangle, in the top left corner, white background",
    "a black backdrop with a big yellow square in the middle".
    """
    colour = scene.colour if rng.random() >= drop_probability else None
    background = scene.background if rng.random() >= drop_probability else None
    position = scene.position if rng.random() >= drop_probability else None
    size = scene.size if rng.random() >= min(1.0, 2 * drop_probability) else None

    adjectives = [w for w in (rng.choice(_SIZE_WORDS[size]) if size else None, colour) if w]
    noun = " ".join([*adjectives, scene.shape])
    where = rng.choice(_POSITION_PHRASES[position]) if position else None
    template = rng.randrange(4)
    if template == 0:
        # "a small red circle on a blue background, top left"
        parts = [f"{_article(noun)} {noun}"]
        if background:
            parts[0] += " " + rng.choice(_BACKGROUND_PHRASES).format(background)
        if where:
            parts.append(where)
        return ", ".join(parts)
    if template == 1:
        # "small green triangle, top left, white background"
        parts = [noun]
        if where:
            parts.append(where)
        if background:
            parts.append(rng.choice(_TAIL_BACKGROUND_PHRASES).format(background))
        return ", ".join(parts)
    if template == 2 and background:
        # "a blue background with a red circle in the top left"
        text = f"a {background} {rng.choice(('background', 'backdrop'))} with {_article(noun)} {noun}"
        return f"{text} {where}" if where else text
    # "a red circle in the top left on a blue background"
    text = f"{_article(noun)} {noun}"
    if where:
        text += f" {where}"
    if background:
        text += " " + rng.choice(_BACKGROUND_PHRASES).format(background)
    return text


def fragment_caption(scene: Scene, rng: random.Random) -> str:
    """A caption that names only one or two attributes of ``scene``.

    Examples: "red", "a red shape", "blue background", "on the left", "a small circle".
    Such fragments are what negative prompts look like (``--no red``): a model that has
    learned what "red" alone means can be steered away from it.
    """
    colour_phrases = (scene.colour, f"a {scene.colour} shape", f"{scene.colour} shape")
    choice = rng.randrange(5)
    if choice == 0:
        return rng.choice(colour_phrases)
    if choice == 1:
        return rng.choice((f"{scene.background} background", f"on {scene.background}", f"a {scene.background} backdrop"))
    if choice == 2:
        return rng.choice(_POSITION_PHRASES[scene.position])
    if choice == 3:
        size = rng.choice(_SIZE_WORDS[scene.size])
        return rng.choice((f"{_article(size)} {size} {scene.shape}", f"{size} shape", scene.shape))
    return f"{rng.choice(colour_phrases)} {rng.choice(_POSITION_PHRASES[scene.position])}"


def training_scenes(count: int, *, seed: int, width: int = 64, height: int = 64) -> list[Scene]:
    """``count`` training scenes (held-out combinations excluded), the same for the same seed."""
    rng = random.Random(f"train-scenes:{seed}:{width}x{height}")
    return [sample_scene(rng, width, height) for _ in range(count)]


def eval_pairs(count: int = 240, *, seed: int = 1234, width: int = 64, height: int = 64) -> list[EvalPair]:
    """Held-out evaluation cases: full captions of held-out combinations, each with a seed.

    Args:
        count: how many cases.
        seed: selects the cases and their render seeds; the default is the benchmark's.
        width: image width of the scenes.
        height: image height of the scenes.
    """
    rng = random.Random(f"eval-pairs:{seed}:{width}x{height}")
    pairs = []
    for _ in range(count):
        scene = sample_scene(rng, width, height, held_out=True)
        pairs.append(EvalPair(full_caption(scene, rng), rng.randrange(2**31), scene))
    return pairs


def fill_ratio(shape: str) -> float:
    """The fraction of its bounding box that a perfect shape covers."""
    return {"circle": math.pi / 4, "square": 1.0, "triangle": 0.5}[shape]


def shape_region(scenes: list[Scene], *, margin: float = 2.0) -> np.ndarray:
    """Where each scene's shape is: ``(N, H, W)`` float32, 1 inside the shape's bounding box
    grown by ``margin`` pixels on every side, 0 elsewhere (all scenes of one size).

    It marks the pixels where the shape classes differ (a square's corners, a circle's
    rim, a triangle's slopes), which a plain mean over the image weighs by their tiny share
    of it: the trainer weighs the loss there more (``shape_loss_weight``).
    """
    height, width = scenes[0].height, scenes[0].width
    ys = np.arange(height, dtype=np.float32)[None, :, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, None, :] + 0.5
    cx = np.array([s.cx for s in scenes], dtype=np.float32)[:, None, None]
    cy = np.array([s.cy for s in scenes], dtype=np.float32)[:, None, None]
    reach = np.array([s.extent / 2 + margin for s in scenes], dtype=np.float32)[:, None, None]
    inside = (np.abs(xs - cx) <= reach) & (np.abs(ys - cy) <= reach)
    return inside.astype(np.float32)


def class_region(scenes: list[Scene], *, threshold: float = 0.1) -> np.ndarray:
    """Where each scene's class shows: ``(N, H, W)`` float32, 1 on the pixels whose colour
    would differ (by more than ``threshold`` of the way between background and shape) had the
    same box held another of the shape classes (a square's corners, a circle's rim, a
    triangle's slopes), 0 elsewhere. A picture that blurs these pixels has lost its class
    whatever the rest of it holds, and they are a few percent of it."""
    masks = []
    for scene in scenes:
        covers = []
        for shape in SHAPES:
            drawn = np.asarray(draw_scene(replace(scene, shape=shape, colour="white", background="black")), dtype=np.float32)
            covers.append(drawn.mean(axis=-1) / 255.0)
        stacked = np.stack(covers)
        masks.append((stacked.max(axis=0) - stacked.min(axis=0) > threshold).astype(np.float32))
    return np.stack(masks)


def coverage_box(cover: np.ndarray) -> tuple[float, float, float, float]:
    """The box of a shape from each pixel's coverage (``(H, W)`` in [0, 1]): its width and
    height (the columns and rows some pixel covers, each weighted by its largest coverage) and
    its centre ``(cx, cy)`` in pixels; the width or height is 0 where nothing is covered."""
    columns, rows = cover.max(axis=0), cover.max(axis=1)
    box_w, box_h = float(columns.sum()), float(rows.sum())
    height, width = cover.shape
    cx = float((columns * (np.arange(width) + 0.5)).sum()) / max(box_w, 1e-6)
    cy = float((rows * (np.arange(height) + 0.5)).sum()) / max(box_h, 1e-6)
    return box_w, box_h, cx, cy
