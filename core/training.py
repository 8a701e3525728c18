"""A member's LoRA training request (``/train``): its rules, its pictures and its cost, without torch.

The bot reads the pictures a member gives (attachments, or one zip of them with optional
``<picture>.txt`` captions beside each, the DreamBooth convention), checks every rule here
before anything is charged, and stores the pictures for the worker. The worker trains with
:mod:`gpu_worker.lora_training` on the config :func:`training_config` makes.

Rules: a name and a trigger word of letters, digits, ``_`` and ``-`` (the trigger 3-32
characters and not an ordinary English word of the prompt grammar, so that it names only
this LoRA); a kind (subject, face, style); 5 to 40 pictures, each a PNG, JPEG or WebP that
decodes, at least 64 pixels on its shorter side and at most 4096 on its longer; a zip of at
most :data:`MAX_ZIP_BYTES` that unpacks to at most :data:`MAX_UNPACKED_BYTES` (a zip bomb is
refused before it is unpacked); captions of at most 300 characters.
"""

from __future__ import annotations

import enum
import io
import math
import re
import zipfile
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from core.text import unstorable

MIN_IMAGES = 5
MAX_IMAGES = 40
MAX_ZIP_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_BYTES = 400 * 1024 * 1024
MAX_IMAGE_BYTES = 25 * 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_CAPTION = 300
FORMATS = {"PNG", "JPEG", "WEBP"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,39}")
_TRIGGER = re.compile(r"[A-Za-z][A-Za-z0-9_-]{2,31}")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

STEPS_PER_IMAGE = 250
"""Training steps (of four pictures each) per picture, between the bounds below: 12 pictures
train 3,000 steps, which ``bench/lora_training.py`` measured as enough for a shape the shipped
model never saw (1,200 steps were not)."""
MIN_STEPS, MAX_STEPS = 1250, 4000
CREDITS_PER_100_STEPS = 1
"""What training costs: a credit per hundred steps (about the GPU time of one standard render
on an SD 1.5 model), plus four credits for the four sample images."""
SAMPLE_CREDITS = 4


class TrainingKind(enum.StrEnum):
    """What a LoRA learns; it picks the captions' form and the class prompt."""

    SUBJECT = "subject"
    """An object or character: ``"<trigger>, <caption>"``; the class prompt is "a photo"."""
    FACE = "face"
    """A person's face: as a subject; a face of a minor is refused."""
    STYLE = "style"
    """A look: ``"<caption>, in the style of <trigger>"``."""


class TrainingRefused(ValueError):
    """A request that breaks a rule; the message is for the member."""


@dataclass(frozen=True, slots=True)
class Picture:
    """One training picture: its bytes as given, its size and its caption ("" for none)."""

    data: bytes
    width: int
    height: int
    filename: str
    caption: str = ""


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    """What a training job trains on, as stored with its LoRA (``trained_loras.request``; the
    pictures themselves are ``training_pictures`` rows): the captions as given, the kind and
    trigger, the steps, the seed and the server's NSFW rule."""

    kind: TrainingKind
    trigger: str
    captions: tuple[str, ...]
    """One per picture, in order ("" where none was given)."""
    steps: int
    seed: int = 0
    rank: int = 8
    nsfw_allowed: bool = True
    """The server posts NSFW images (a picture the detector flags is refused where it does not)."""

    def training_captions(self) -> list[str]:
        """Each picture's caption with the trigger where the kind puts it."""
        return [training_caption(self.kind, self.trigger, c) for c in self.captions]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "trigger": self.trigger, "captions": list(self.captions), "steps": self.steps, "seed": self.seed, "rank": self.rank,
                "nsfw_allowed": self.nsfw_allowed}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TrainingRequest:
        return cls(TrainingKind(str(data["kind"])), str(data["trigger"]),
                   tuple(str(c) for c in data.get("captions") or ()),  # type: ignore[attr-defined]
                   int(data["steps"]), int(data.get("seed", 0)), int(data.get("rank", 8)),  # type: ignore[call-overload]
                   bool(data.get("nsfw_allowed", True)))


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise TrainingRefused("A LoRA name is 2-40 letters, digits, `_` or `-`, starting with a letter or digit.")
    return name


def check_trigger(trigger: str, vocabulary: frozenset[str] = frozenset()) -> str:
    """The trigger word, or refused: its form, or a word prompts already use."""
    if not _TRIGGER.fullmatch(trigger or ""):
        raise TrainingRefused("A trigger word is 3-32 letters, digits, `_` or `-`, starting with a letter "
                              "(a made-up word such as `zorbl` works best).")
    if trigger.lower() in vocabulary or trigger.lower() in _COMMON_WORDS:
        raise TrainingRefused(f"`{trigger}` is an ordinary word; pick a made-up one (such as `zorbl`) "
                              "so that it only ever means your LoRA.")
    return trigger


def read_picture(data: bytes, filename: str, caption: str = "") -> Picture:
    """One picture checked: it decodes, in an allowed format and size."""
    if len(data) > MAX_IMAGE_BYTES:
        raise TrainingRefused(f"`{_short(filename)}` is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
    unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    not_an_image = TrainingRefused(f"`{_short(filename)}` is not an image (PNG, JPEG or WebP).")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size  # the header: nothing decoded yet
    except unreadable:
        raise not_an_image from None
    if kind not in FORMATS:
        raise TrainingRefused(f"`{_short(filename)}` is a {kind} picture; give PNG, JPEG or WebP.")
    # Checked before decoding: a small file can declare a picture of gigabytes.
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise TrainingRefused(f"`{_short(filename)}` is {width}x{height}; pictures need {MIN_SIDE} to "
                              f"{MAX_SIDE} pixels a side.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except unreadable:
        raise not_an_image from None
    caption = " ".join(caption.split())
    bad = unstorable(caption)
    if bad is not None:
        raise TrainingRefused(f"The caption of `{_short(filename)}` holds an unusable character ({bad}); remove it.")
    if len(caption) > MAX_CAPTION:
        raise TrainingRefused(f"The caption of `{_short(filename)}` is longer than {MAX_CAPTION} characters.")
    return Picture(data, width, height, filename, caption)


def unpack_zip(data: bytes) -> list[Picture]:
    """The pictures of a zip, each with the caption of a ``.txt`` of the same stem, if any.

    Folders are flattened, hidden files and other files ignored; sizes are checked from the
    zip's directory before anything is unpacked, and again while unpacking.
    """
    if len(data) > MAX_ZIP_BYTES:
        raise TrainingRefused(f"The zip is larger than {MAX_ZIP_BYTES // (1024 * 1024)} MB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, ValueError):
        raise TrainingRefused("That file is not a zip archive.") from None
    visible = [i for i in entries if not any(p.startswith((".", "__MACOSX")) for p in i.filename.split("/"))]
    if sum(i.file_size for i in visible) > MAX_UNPACKED_BYTES:
        raise TrainingRefused(f"The zip unpacks to more than {MAX_UNPACKED_BYTES // (1024 * 1024)} MB.")
    images = [i for i in visible if i.filename.lower().endswith(_IMAGE_SUFFIXES)]
    if len(images) > MAX_IMAGES:
        raise TrainingRefused(f"The zip holds {len(images)} pictures; the most is {MAX_IMAGES}.")
    captions = {i.filename.rsplit(".", 1)[0]: i for i in visible if i.filename.lower().endswith(".txt")}
    pictures = []
    for info in sorted(images, key=lambda i: i.filename):
        caption_info = captions.get(info.filename.rsplit(".", 1)[0])
        caption = _read(archive, caption_info, MAX_CAPTION * 4).decode("utf-8", "replace") if caption_info else ""
        name = info.filename.rsplit("/", 1)[-1]
        pictures.append(read_picture(_read(archive, info, MAX_IMAGE_BYTES), name, caption))
    return pictures


def check_pictures(pictures: list[Picture]) -> list[Picture]:
    """The count rule (and no picture twice)."""
    if len(pictures) < MIN_IMAGES:
        raise TrainingRefused(f"Training needs at least {MIN_IMAGES} pictures; you gave {len(pictures)}.")
    if len(pictures) > MAX_IMAGES:
        raise TrainingRefused(f"Training takes at most {MAX_IMAGES} pictures; you gave {len(pictures)}.")
    seen: set[bytes] = set()
    unique = []
    for picture in pictures:
        if picture.data not in seen:
            seen.add(picture.data)
            unique.append(picture)
    if len(unique) < MIN_IMAGES:
        raise TrainingRefused(f"Training needs at least {MIN_IMAGES} different pictures; "
                              f"{len(pictures) - len(unique)} of yours are the same as another.")
    return unique


MAX_TRAIN_SIDE = 1024
"""Pictures are kept at most this long a side (training draws them at the model's budget)."""


def normalised(picture: Picture) -> tuple[bytes, int, int]:
    """The picture as kept for training: RGB, at most :data:`MAX_TRAIN_SIDE` a side, WebP
    (quality 95), with its new size."""
    with Image.open(io.BytesIO(picture.data)) as image:
        rgb = image.convert("RGB")
    scale = min(1.0, MAX_TRAIN_SIDE / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "WEBP", quality=95, method=4)
    return out.getvalue(), rgb.width, rgb.height


def training_steps(count: int) -> int:
    """How many steps a LoRA of ``count`` pictures trains."""
    return max(MIN_STEPS, min(MAX_STEPS, count * STEPS_PER_IMAGE))


CHOSEN_STEPS = (100, MAX_STEPS)
"""The range of steps a member may ask for instead of :func:`training_steps`'s."""


def training_cost(count: int, steps: int | None = None) -> int:
    """Credits a training of ``count`` pictures costs (shown before it starts), at ``steps``
    (default :func:`training_steps`)."""
    return SAMPLE_CREDITS + math.ceil((steps or training_steps(count)) / 100) * CREDITS_PER_100_STEPS


def check_steps(steps: int | None) -> int | None:
    if steps is not None and not CHOSEN_STEPS[0] <= steps <= CHOSEN_STEPS[1]:
        raise TrainingRefused(f"Steps are {CHOSEN_STEPS[0]} to {CHOSEN_STEPS[1]:,}.")
    return steps


def training_caption(kind: TrainingKind, trigger: str, caption: str) -> str:
    """The caption a picture trains with: as given when it names the trigger already, else
    with the trigger where its kind puts it."""
    caption = caption.strip().rstrip(".")
    if re.search(rf"(?<![\w-]){re.escape(trigger)}(?![\w-])", caption, re.IGNORECASE):
        return caption
    if kind is TrainingKind.STYLE:
        return f"{caption}, in the style of {trigger}" if caption else f"a picture in the style of {trigger}"
    return f"{trigger}, {caption}" if caption else f"a photo of {trigger}"


def sample_prompts(kind: TrainingKind, trigger: str) -> list[str]:
    """The four prompts the finished LoRA's sample images are drawn from."""
    if kind is TrainingKind.STYLE:
        return [f"a house, in the style of {trigger}", f"a portrait, in the style of {trigger}",
                f"a landscape, in the style of {trigger}", f"a still life, in the style of {trigger}"]
    return [f"a photo of {trigger}", f"{trigger} on a beach", f"{trigger} in a forest", f"a drawing of {trigger}"]


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry's bytes, stopping at ``limit`` whatever its header claims."""
    with archive.open(info) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TrainingRefused(f"`{_short(info.filename)}` in the zip is too large.")
    return data


def _short(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    cleaned = "".join(c for c in name if c.isprintable() and c not in "`")
    return cleaned[:60] or "a file"


_COMMON_WORDS = frozenset({
    "the", "and", "with", "from", "this", "that", "photo", "picture", "image", "style",
    "drawing", "painting", "portrait", "face", "person", "man", "woman", "girl", "boy", "cat",
    "dog", "car", "house", "tree", "star", "heart", "circle", "square", "triangle", "red",
    "blue", "green", "yellow", "black", "white",
})
