"""The flag table: every ``--flag`` of the prompt grammar, defined once.

A :class:`Flag` holds its name and aliases, what it takes (a value, text up to the next
flag, or nothing), how its value is read and checked, an example, the :class:`JobSpec`
field it sets, and how it is written back. :mod:`core.prompt` reads flags through this table
(unknown-flag suggestions included), :func:`core.prompt.format` writes them back in table
order, :func:`written` tells which flags a request spelled out, and the README's flag table
is :func:`markdown_table` (``python -m core.flags`` prints it; a test keeps them equal).

Adding a flag: one :class:`Flag` below, and a :class:`JobSpec` field if it sets a new one;
``tests/gpu_worker/test_flags_reach_the_render.py`` then asks that it change the render.

Longer than 400 lines on purpose: the table and the readers and writers its records name
are one unit; split apart, a flag's record and the code that reads it would live in two files.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

from core.attention import check_attention
from core.controls import CONTROL_TYPES
from core.errors import PromptError
from core.references import CHARACTER_WEIGHT_MAX, MAX_REFERENCES, STYLE_WEIGHT_MAX
from core.samplers import canonical_sampler
from core.spec import ControlRef, JobSpec, Lane, LoraRef

SEED_MAX = 2**32 - 1
ASPECT_LIMIT = 4  # ratios from 1:4 to 4:1
QUALITY_VALUES = (0.25, 0.5, 1.0, 2.0)
MAX_REPEAT = 40
MAX_NEGATIVE_CHARS = 2000

_INT = re.compile(r"[0-9]{1,10}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,10}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")
_RATIO = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Takes(enum.Enum):
    VALUE = "one value"
    TEXT = "text up to the next flag"
    SWITCH = "nothing"


Reader = Callable[[str, str], object]
"""``(flag as typed, value as typed) -> checked value``; raises :class:`PromptError`."""


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag of the grammar."""

    name: str
    field: str
    """The :class:`JobSpec` field it sets."""
    help: str
    """What it does, for the README."""
    example: str
    """A value as a user would type it (empty for switches)."""
    write: Callable[[JobSpec], list[str]]
    """The words :func:`core.prompt.format` writes for a spec; none at the default."""
    aliases: tuple[str, ...] = ()
    takes: Takes = Takes.VALUE
    read: Reader | None = None
    """Reads a value or text; switches set :attr:`switch_value`."""
    switch_value: object = True
    needs: str = "a value"
    """What a missing value is called in the error (``"needs a LoRA name, e.g. ..."``)."""
    combine: Callable[[str, list[object]], object] | None = None
    """For flags that may be given more than once: all their values into the field's one."""
    needs_image_prompt: bool = False
    needs_flag: str | None = None
    """Another flag this one weighs (``--sw`` weighs ``--sref``): refused without it."""


# --------------------------------------------------------------------------- readers


def num(value: float) -> str:
    """A number as plain decimal digits (``1e-05`` would not parse back)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{Decimal(repr(float(value))):f}"


def _int_in(low: int, high: int, what: str) -> Reader:
    def read(flag: str, value: str) -> int:
        if not _INT.fullmatch(value) or not low <= int(value) <= high:
            raise PromptError(f"{flag} {value}", f"{what} must be a whole number from {low} to {high}")
        return int(value)

    return read


def float_in(token: str, value: str, low: float, high: float, what: str) -> float:
    """``value`` as a number in ``[low, high]``, or a :class:`PromptError` naming ``token``."""
    if not _FLOAT.fullmatch(value) or not low <= float(value) <= high:
        raise PromptError(token, f"{what} must be a number from {num(low)} to {num(high)}")
    return float(value)


def _float(low: float, high: float, what: str) -> Reader:
    return lambda flag, value: float_in(f"{flag} {value}", value, low, high, what)


def _aspect(flag: str, value: str) -> tuple[int, int]:
    token = f"{flag} {value}"
    match = _RATIO.fullmatch(value)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise PromptError(token, "aspect ratio must be two whole numbers like 16:9")
    w, h = int(match.group(1)), int(match.group(2))
    if w > ASPECT_LIMIT * h or h > ASPECT_LIMIT * w:
        raise PromptError(token, f"aspect ratio must be between 1:{ASPECT_LIMIT} and {ASPECT_LIMIT}:1")
    divisor = math.gcd(w, h)
    return (w // divisor, h // divisor)


def _quality(flag: str, value: str) -> float:
    if not _FLOAT.fullmatch(value) or float(value) not in QUALITY_VALUES:
        raise PromptError(
            f"{flag} {value}", "quality must be one of " + ", ".join(num(q) for q in QUALITY_VALUES)
        )
    return float(value)


def _model(flag: str, value: str) -> str:
    slug = value.lower()
    if not _MODEL_NAME.fullmatch(slug):
        raise PromptError(f"{flag} {value}", "a model name is letters, digits, '.', '_' and '-' (up to 64)")
    return slug


_VERSION = re.compile(r"[0-9]{1,2}(?:\.[0-9]{1,2})?")


def _version(prefix: str) -> Reader:
    """``--v 7`` / ``--niji 6``: Midjourney's version flags, read as the model aliased
    ``v7`` / ``niji6`` in ``models.toml`` (an operator decides which model that is)."""

    def read(flag: str, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise PromptError(f"{flag} {value}", "a version is a number like 6 or 6.1")
        return f"{prefix}{value}"

    return read


def _sampler(flag: str, value: str) -> str:
    try:
        return canonical_sampler(value)
    except PromptError as exc:
        raise PromptError(f"{flag} {value}", exc.reason) from None


STYLES = ("raw",)
"""Values of ``--style``."""


def _style(flag: str, value: str) -> bool:
    if value.lower() not in STYLES:
        raise PromptError(
            f"{flag} {value}",
            "the only style is `raw` (leave out the model's house style: the words and negative "
            "prompt it adds to every prompt)",
        )
    return True


def _negative(flag: str, value: str) -> str:
    text = value.strip(" ,")
    if not text:
        raise PromptError(flag, "needs the things to leave out, e.g. --no text, watermark")
    check_attention(text)
    return text


def _negatives(flag: str, values: list[object]) -> str:
    joined = ", ".join(str(v) for v in values)
    if len(joined) > MAX_NEGATIVE_CHARS:
        raise PromptError(
            flag,
            f"the negative prompt is {len(joined):,} characters long; the limit is {MAX_NEGATIVE_CHARS:,}",
        )
    return joined


def lora_name(token: str, name: str) -> str:
    if not _LORA_NAME.fullmatch(name):
        raise PromptError(token, "a LoRA name is letters, digits, '.', '_' and '-' (up to 100)")
    return name


def lora_weight(token: str, weight: str | None) -> float:
    if weight is None or weight == "":
        return 1.0
    return float_in(token, weight, -2.0, 2.0, "LoRA weight")


def _loras(flag: str, value: str) -> list[LoraRef]:
    loras = []
    for entry in (e for e in re.split(r"[,\s]+", value) if e):
        token = f"{flag} {entry}"
        name, sep, weight = entry.partition(":")
        if ":" in weight:
            raise PromptError(token, "write a LoRA as name or name:weight, e.g. film_grain:0.6")
        loras.append(LoraRef(lora_name(token, name), lora_weight(token, weight if sep else None)))
    if not loras:
        raise PromptError(flag, "needs a LoRA name, e.g. --lora film_grain:0.6")
    return loras


MAX_URL_CHARS = 2048
WEIRD_MAX = 3000
MAX_CONTROLS = 3
CONTROL_WEIGHT = (0.0, 2.0)


def _control(flag: str, value: str) -> list[ControlRef]:
    token = f"{flag} {value}"
    kind, *rest = value.lower().split(":")
    if kind not in CONTROL_TYPES:
        raise PromptError(token, f"the control types are {', '.join(CONTROL_TYPES)}")
    weight, as_is = 1.0, False
    for part in rest:
        if part == "asis":
            as_is = True
        elif part:
            weight = float_in(token, part, *CONTROL_WEIGHT, "control weight")
    return [ControlRef(kind, weight, as_is)]


def looks_like_url(word: str) -> bool:
    """Whether a word is a link (``<...>`` around it, as Discord users hide embeds, allowed)."""
    lowered = word.lower()
    if lowered.startswith("<") and lowered.endswith(">"):
        lowered = lowered[1:-1]
    return lowered.startswith(("http://", "https://"))


def check_url(word: str) -> str:
    """A picture link as typed, checked (a host, at most :data:`MAX_URL_CHARS`), without ``<>``."""
    url = word[1:-1] if word.startswith("<") and word.endswith(">") else word
    try:
        host = urlsplit(url).netloc
    except ValueError:
        host = ""
    if not host:
        raise PromptError(word, "not a valid image URL")
    if len(url) > MAX_URL_CHARS:
        raise PromptError(url[:60] + "…", f"image URLs may be at most {MAX_URL_CHARS:,} characters long")
    return url


def _reference(flag: str, value: str) -> list[str]:
    if not looks_like_url(value):
        raise PromptError(f"{flag} {value}", "takes a link to a picture (https://...)")
    return [check_url(value)]


def _all_references(flag: str, values: list[object]) -> tuple[str, ...]:
    urls = tuple(url for value in values for url in value)  # type: ignore[attr-defined]
    if len(urls) > MAX_REFERENCES:
        raise PromptError(flag, f"at most {MAX_REFERENCES} pictures per kind of reference")
    return urls


def _write_references(flag: str, field_name: str) -> Callable[[JobSpec], list[str]]:
    def write(spec: JobSpec) -> list[str]:
        return [f"--{flag} {url}" for url in getattr(spec, field_name)]

    return write


def read_controls(text: str) -> tuple[ControlRef, ...]:
    """Controls written as ``--cn`` values without the flag (``"canny:0.8 scribble"``), as
    the Use as Control form takes them.

    Raises:
        PromptError: no control, an unknown type, a weight out of range, or more than three.
    """
    values: list[object] = [_control("--cn", word.removeprefix("--cn")) for word in text.split() if word != "--cn"]
    if not values:
        raise PromptError("--cn", "needs a control type, e.g. canny or canny:0.8 scribble:0.5")
    return _all_controls("--cn", values)


def _all_controls(flag: str, values: list[object]) -> tuple[ControlRef, ...]:
    controls = tuple(c for value in values for c in value)  # type: ignore[attr-defined]
    if len(controls) > MAX_CONTROLS:
        raise PromptError(flag, f"at most {MAX_CONTROLS} controls per prompt")
    return controls


def _write_controls(spec: JobSpec) -> list[str]:
    words = []
    for c in spec.controls:
        text = c.kind if c.weight == 1 else f"{c.kind}:{num(c.weight)}"
        words.append(f"--cn {text}:asis" if c.as_is else f"--cn {text}")
    return words


def _all_loras(flag: str, values: list[object]) -> tuple[LoraRef, ...]:
    return tuple(lora for value in values for lora in value)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- writers


def _unless(
    field: str, default: object, flag: str, show: Callable[[object], str] = str
) -> Callable[[JobSpec], list[str]]:
    def write(spec: JobSpec) -> list[str]:
        value = getattr(spec, field)
        return [] if value == default else [f"--{flag} {show(value)}"]

    return write


def _ratio(value: object) -> str:
    assert isinstance(value, tuple)
    return f"{value[0]}:{value[1]}"


def _number(value: object) -> str:
    return num(value)  # type: ignore[arg-type]


def _write_loras(spec: JobSpec) -> list[str]:
    return [f"--lora {x.name}" if x.weight == 1 else f"--lora {x.name}:{num(x.weight)}" for x in spec.loras]


def _write_lane(lane: Lane) -> Callable[[JobSpec], list[str]]:
    return lambda spec: [f"--{lane.value}"] if spec.lane is lane else []


# --------------------------------------------------------------------------- the table

FLAGS: tuple[Flag, ...] = (
    Flag("ar", "aspect_ratio", "aspect ratio, from 1:4 to 4:1; sized to the model's pixel budget", "16:9",
         _unless("aspect_ratio", (1, 1), "ar", _ratio),
         aliases=("aspect",), read=_aspect),
    Flag("seed", "seed", f"the first image's seed, 0 to {SEED_MAX} (the others take the next three)", "1234",
         _unless("seed", None, "seed"), read=_int_in(0, SEED_MAX, "seed")),
    Flag("no", "negative_prompt", "what to leave out (the negative prompt); may be given more than once",
         "text, watermark", _unless("negative_prompt", "", "no"), takes=Takes.TEXT, read=_negative,
         needs="the things to leave out", combine=_negatives),
    Flag("chaos", "chaos", "0-100: how different the four images are from each other", "50",
         _unless("chaos", 0, "chaos"), aliases=("c",), read=_int_in(0, 100, "chaos")),
    Flag("weird", "weird", f"0-{WEIRD_MAX}: moves the whole prompt one random way (drawn from the seed), so the four "
         "images turn unusual together (--chaos moves each its own way)", "250",
         _unless("weird", 0, "weird"), aliases=("w",), read=_int_in(0, WEIRD_MAX, "weird")),
    Flag("stylize", "stylize", "0-1000: how far the model's own style is pushed (guidance)", "250",
         _unless("stylize", 100, "stylize"), aliases=("s",), read=_int_in(0, 1000, "stylize")),
    Flag("steps", "steps", "1-150 denoising steps (default: the model's)", "30",
         _unless("steps", None, "steps"), read=_int_in(1, 150, "steps")),
    Flag("stop", "stop", "10-100: finish the render this far through its steps (earlier: rougher, less finished)",
         "80", _unless("stop", 100, "stop"), read=_int_in(10, 100, "stop")),
    Flag("cfg", "cfg", "0-30 classifier-free guidance scale (overrides --stylize)", "7",
         _unless("cfg", None, "cfg", _number), read=_float(0.0, 30.0, "cfg")),
    Flag("sampler", "sampler", "an A1111 sampler name, e.g. `Euler a`, `DPM++ 2M Karras`", "DPM++ 2M Karras",
         _unless("sampler", None, "sampler"), takes=Takes.TEXT, read=_sampler, needs="a sampler name"),
    Flag("model", "model", "one of the server's models (`/models`)", "sdxl",
         _unless("model", None, "model"), read=_model),
    Flag("v", "model", "a model by version: the one the server's `models.toml` aliases `v<N>` (`--model v<N>`)",
         "7", lambda spec: [], aliases=("version",), read=_version("v")),
    Flag("niji", "model", "a model by niji version: the one aliased `niji<N>` in `models.toml`", "6",
         lambda spec: [], read=_version("niji")),
    Flag("lora", "loras", "LoRAs by name with an optional weight from -2 to 2; may be given more than once",
         "film_grain:0.6", _write_loras, takes=Takes.TEXT, read=_loras, needs="a LoRA name", combine=_all_loras),
    Flag("tile", "tile", "an image that tiles seamlessly", "", lambda s: ["--tile"] if s.tile else [],
         takes=Takes.SWITCH),
    Flag("style", "raw", "`raw`: without the model's house style (the words and negative prompt its "
         "`models.toml` adds to every prompt)", "raw", lambda s: ["--style raw"] if s.raw else [], read=_style),
    Flag("quality", "quality", "0.25, 0.5, 1 or 2: scales the steps and the price", "2",
         _unless("quality", 1.0, "quality", _number), aliases=("q",), read=_quality),
    Flag("repeat", "repeat", f"1-{MAX_REPEAT}: queue the prompt this many times", "4",
         _unless("repeat", 1, "repeat"), aliases=("r",), read=_int_in(1, MAX_REPEAT, "repeat")),
    Flag("iw", "image_weight", "0-3: how much the image prompts weigh against the text", "1.5",
         _unless("image_weight", None, "iw", _number), read=_float(0.0, 3.0, "image weight"),
         needs_image_prompt=True),
    Flag("sref", "style_refs", "a picture whose style the images take (a link; up to 3, each with its own --sref)",
         "https://cdn.discordapp.com/…/style.png", _write_references("sref", "style_refs"), read=_reference,
         needs="a picture link", combine=_all_references),
    Flag("sw", "style_weight", f"0-{STYLE_WEIGHT_MAX}: how strongly --sref's style applies (default 100)", "250",
         _unless("style_weight", 100, "sw"), read=_int_in(0, STYLE_WEIGHT_MAX, "style weight"), needs_flag="sref"),
    Flag("cref", "character_refs", "a picture of a character the images keep (a link; up to 3)",
         "https://cdn.discordapp.com/…/hero.png", _write_references("cref", "character_refs"), read=_reference,
         needs="a picture link", combine=_all_references),
    Flag("cw", "character_weight", f"0-{CHARACTER_WEIGHT_MAX}: 100 keeps face, hair and clothes of --cref; lower, "
         "mostly the face", "50", _unless("character_weight", 100, "cw"),
         read=_int_in(0, CHARACTER_WEIGHT_MAX, "character weight"), needs_flag="cref"),
    Flag("cn", "controls", "a ControlNet guides the layout from the prompt's picture: type (`canny`, `lineart`, "
         "`scribble`, `tile`, `depth`, `pose`), weight 0-2, `:asis` for a ready map; up to 3, one picture for all "
         "or one each", "canny:0.8", _write_controls, read=_control, needs="a control type, e.g. --cn canny",
         combine=_all_controls, needs_image_prompt=True),
    Flag("clip-skip", "clip_skip", "1-12: skip the text encoder's last layers (A1111's CLIP skip)", "2",
         _unless("clip_skip", None, "clip-skip"), read=_int_in(1, 12, "clip skip")),
    Flag("fast", "lane", "the fast lane (costs credits)", "", _write_lane(Lane.FAST), takes=Takes.SWITCH,
         switch_value=Lane.FAST),
    Flag("relax", "lane", "the relax lane (free where the server allows it, served after fast jobs)", "",
         _write_lane(Lane.RELAX), takes=Takes.SWITCH, switch_value=Lane.RELAX),
)  # fmt: skip

_BY_NAME: dict[str, Flag] = {n: f for f in FLAGS for n in (f.name, *f.aliases)}
NAMES: tuple[str, ...] = tuple(f.name for f in FLAGS)
"""Every flag by canonical name."""
SPELLINGS: tuple[str, ...] = tuple(_BY_NAME)
"""Every name and alias the grammar reads."""


def lookup(typed: str) -> Flag | None:
    """The flag a word names (``--AR``, ``--clip_skip``: case and ``_`` ignored), if any."""
    return _BY_NAME.get(typed.removeprefix("--").lower().replace("_", "-"))


# A flag as typed at the start of a word (phones turn "--" into a long dash).
_WRITTEN = re.compile(r"(?<!\S)(?:--|[—–])([A-Za-z][\w-]*)")


def written(text: str) -> set[str]:
    """The canonical names of the flags ``text`` spells out (long dashes included)."""
    return {flag.name for m in _WRITTEN.finditer(text) if (flag := lookup(m.group(1))) is not None}


def write(spec: JobSpec) -> list[str]:
    """The flags of ``spec`` as :func:`core.prompt.format` writes them, in table order."""
    return [word for flag in FLAGS for word in flag.write(spec)]


def markdown_table(flags: Sequence[Flag] = FLAGS) -> str:
    """The README's flag table."""
    rows = ["| flag | also | what it does | example |", "|---|---|---|---|"]
    for f in flags:
        also = ", ".join(f"`--{a}`" for a in f.aliases)
        example = f"`--{f.name} {f.example}`" if f.example else f"`--{f.name}`"
        rows.append(f"| `--{f.name}` | {also} | {f.help} | {example} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
