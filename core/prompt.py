"""The job grammar: Midjourney-style prompt text to :class:`~core.spec.JobSpec` and back.

A prompt reads, in order: optional image URLs, the prompt text, then flags::

    https://x/cat.png a cat in a hat::2 (red:1.2) scarf <lora:film:0.6> --ar 16:9 --no dogs, blur

* ``{a, b}`` permutations expand into one job each (nested too, and inside flags such as
  ``--ar {1:1, 16:9}``); ``\\,`` is a literal comma inside braces. At most
  :data:`MAX_JOBS` jobs.
* ``text::weight`` splits the prompt into weighted parts (weights may be negative, their
  sum must be positive). A1111 attention syntax ``(word:1.3)``, ``((word))``, ``[word]``
  is kept verbatim for the worker but checked (balanced brackets, sane weights).
* ``<lora:name:weight>`` tags are taken out of the text into ``loras``.
* A long dash at the start of a word (``—ar``, phones turn ``--`` into one) reads as ``--``.
* Every mistake raises :class:`PromptError`, whose message names the offending token.

:func:`format` writes the canonical text back; ``parse(format(spec)) == spec`` for every
spec that :func:`parse` returns (with the same pixel budget and size step).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from urllib.parse import urlsplit

from core.samplers import canonical_sampler
from core.sizes import DEFAULT_PIXEL_BUDGET, DEFAULT_SIZE_STEP, size_for_aspect
from core.spec import JobSpec, Lane, LoraRef, PromptPart

__all__ = [
    "MAX_JOBS",
    "MAX_PROMPT_CHARS",
    "PromptError",
    "format",
    "parse",
    "parse_all",
]

MAX_JOBS = 40
"""The most jobs one permutation prompt may expand to."""
MAX_PROMPT_CHARS = 2000
"""The longest prompt text (and, separately, the longest ``--no`` text)."""
MAX_INPUT_CHARS = 20_000
"""The longest raw input, before permutations expand (bounds the work one request costs)."""
MAX_IMAGES = 5
MAX_URL_CHARS = 2048
MAX_LORAS = 8
MAX_PARTS = 20
MAX_BRACE_DEPTH = 8
MAX_ATTENTION_DEPTH = 8
PART_WEIGHT_RANGE = (-100.0, 100.0)
ATTENTION_WEIGHT_RANGE = (0.0, 3.0)
ASPECT_LIMIT = 4  # ratios from 1:4 to 4:1
SEED_MAX = 2**32 - 1
QUALITY_VALUES = (0.25, 0.5, 1.0, 2.0)


class PromptError(ValueError):
    """A prompt the parser refuses; ``str(err)`` is ``"<token>: <reason>"`` for the user.

    Attributes:
        token: the offending piece of the prompt as written (``"--ar 99:1"``), or ``""``
            when the problem is the prompt as a whole (empty, too long).
        reason: what is wrong and what is allowed.
    """

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        self.reason = reason
        super().__init__(f"{token}: {reason}" if token else reason)

    def __reduce__(self) -> tuple[type[PromptError], tuple[str, str]]:
        # The default pickling passes only the message back to __init__; Celery pickles errors.
        return (type(self), (self.token, self.reason))


# --------------------------------------------------------------------------- public API


def parse(
    text: str, *, pixel_budget: int = DEFAULT_PIXEL_BUDGET, size_step: int = DEFAULT_SIZE_STEP
) -> JobSpec:
    """Parse prompt ``text`` for one job.

    Args:
        text: the prompt as the user typed it.
        pixel_budget: the pixel count sizes aim at (see :mod:`core.sizes`).
        size_step: sides are multiples of this.

    Raises:
        PromptError: on any mistake, including permutations that expand to more than one
            job (use :func:`parse_all` for those).
    """
    tree, first_group = _read_braces(_check_input(text))
    count = _count(tree)
    if count > 1:
        raise PromptError(
            first_group,
            f"this prompt expands to {_count_words(count)} jobs; use parse_all() for permutations",
        )
    return _parse_job(_expand(tree)[0], pixel_budget, size_step)


def parse_all(
    text: str, *, pixel_budget: int = DEFAULT_PIXEL_BUDGET, size_step: int = DEFAULT_SIZE_STEP
) -> list[JobSpec]:
    """Expand ``{a, b}`` permutations in ``text`` and parse each result, in order.

    Arguments are as for :func:`parse`.

    Raises:
        PromptError: on any mistake in any expansion, or more than :data:`MAX_JOBS` jobs.
    """
    tree, first_group = _read_braces(_check_input(text))
    count = _count(tree)
    if count > MAX_JOBS:
        raise PromptError(
            first_group, f"this prompt expands to {_count_words(count)} jobs; the limit is {MAX_JOBS}"
        )
    return [_parse_job(job_text, pixel_budget, size_step) for job_text in _expand(tree)]


def format(spec: JobSpec) -> str:
    """Return the canonical prompt text for ``spec``.

    Image URLs come first, then the prompt (multi-prompt parts as ``text ::weight``), then
    flags in a fixed order with their long names; defaults are left out. ``width`` and
    ``height`` are not written: parsing derives them from ``--ar`` and the pixel budget.
    ``extra`` is not written either, since no flag sets it.
    """
    words: list[str] = list(spec.image_urls)
    if len(spec.parts) == 1 and spec.parts[0].weight == 1:
        words.append(spec.parts[0].text)
    else:
        # A space before "::" keeps a part ending in ":" apart from the separator.
        words += [f"{part.text} ::{_num(part.weight)}" for part in spec.parts]
    if spec.aspect_ratio != (1, 1):
        words.append(f"--ar {spec.aspect_ratio[0]}:{spec.aspect_ratio[1]}")
    if spec.seed is not None:
        words.append(f"--seed {spec.seed}")
    if spec.negative_prompt:
        words.append(f"--no {spec.negative_prompt}")
    if spec.chaos:
        words.append(f"--chaos {spec.chaos}")
    if spec.stylize != 100:
        words.append(f"--stylize {spec.stylize}")
    if spec.steps is not None:
        words.append(f"--steps {spec.steps}")
    if spec.cfg is not None:
        words.append(f"--cfg {_num(spec.cfg)}")
    if spec.sampler is not None:
        words.append(f"--sampler {spec.sampler}")
    if spec.model is not None:
        words.append(f"--model {spec.model}")
    for lora in spec.loras:
        words.append(f"--lora {lora.name}" if lora.weight == 1 else f"--lora {lora.name}:{_num(lora.weight)}")
    if spec.tile:
        words.append("--tile")
    if spec.quality != 1:
        words.append(f"--quality {_num(spec.quality)}")
    if spec.repeat != 1:
        words.append(f"--repeat {spec.repeat}")
    if spec.image_weight is not None:
        words.append(f"--iw {_num(spec.image_weight)}")
    if spec.clip_skip is not None:
        words.append(f"--clip-skip {spec.clip_skip}")
    if spec.lane is not None:
        words.append(f"--{spec.lane.value}")
    return " ".join(words)


def _num(value: float) -> str:
    """A number as plain decimal digits (``1e-05`` would not parse back)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{Decimal(repr(float(value))):f}"


# --------------------------------------------------------------------------- permutations

# A parsed permutation prompt: literal text and groups; a group is a list of alternatives.
_Seq = list["str | list[_Seq]"]


def _check_input(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, not {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise PromptError("", f"the input is {len(text):,} characters long; the limit is {MAX_INPUT_CHARS:,}")
    return text


def _read_braces(text: str) -> tuple[_Seq, str]:
    """Parse ``{a, b}`` groups; also return the first top-level group as written (for errors)."""
    if "{" not in text and "}" not in text:  # most prompts: skip the character walk
        return [text], ""
    root: _Seq = []
    current = root
    # One frame per open brace: (the sequence it sits in, its alternatives so far, its index).
    stack: list[tuple[_Seq, list[_Seq], int]] = []
    buf: list[str] = []
    first_group = ""

    def flush() -> None:
        if buf:
            current.append("".join(buf))
            buf.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and stack and text.startswith(",", i + 1):
            buf.append(",")
            i += 2
            continue
        if ch == "{":
            if len(stack) >= MAX_BRACE_DEPTH:
                raise PromptError(_word_at(text, i), f"permutations nest more than {MAX_BRACE_DEPTH} deep")
            flush()
            stack.append((current, [], i))
            current = []
        elif ch == "," and stack:
            flush()
            stack[-1][1].append(current)
            current = []
        elif ch == "}":
            if not stack:
                raise PromptError(_word_at(text, i), "unbalanced '}': there is no '{' before it")
            flush()
            parent, alternatives, start = stack.pop()
            alternatives.append(current)
            parent.append(alternatives)
            current = parent
            if not stack and not first_group:
                first_group = text[start : i + 1]
        else:
            buf.append(ch)
        i += 1
    if stack:
        start = stack[-1][2]
        raise PromptError(_word_at(text, start), "unbalanced '{': every '{' needs a closing '}'")
    flush()
    return root, first_group


def _count(seq: _Seq) -> int:
    total = 1
    for item in seq:
        if not isinstance(item, str):
            total *= sum(_count(alternative) for alternative in item)
    return total


def _expand(seq: _Seq) -> list[str]:
    # Only called once _count(seq) is known to be small, so every partial list is small too.
    results = [""]
    for item in seq:
        if isinstance(item, str):
            results = [r + item for r in results]
        else:
            options = [option.strip() for alternative in item for option in _expand(alternative)]
            results = [r + option for r in results for option in options]
    return results


def _count_words(count: int) -> str:
    return f"{count:,}" if count <= 1_000_000 else "more than 1,000,000"


# --------------------------------------------------------------------------- one job

_LORA_TAG = re.compile(r"<lora:([^:<>\s]*)(?::([^<>\s]*))?>", re.IGNORECASE)
_LORA_OPEN = re.compile(r"<lora:", re.IGNORECASE)
# A run of dashes at the start of a word holding at least one long dash, before a letter.
_LONG_DASH = re.compile(r"(?<!\S)(?=[-—–]*[—–])[-—–]+(?=[A-Za-z])")
_LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_INT = re.compile(r"[0-9]{1,10}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,10}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})")
_RATIO = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_MULTI = re.compile(r"::(-?(?:[0-9]{1,10}(?:\.[0-9]{1,20})?|\.[0-9]{1,20}))?")
_ATTENTION_WEIGHT = re.compile(r":\s*([+-]?[.0-9]+)\s*$")

# Flag names as typed (lower case, "_" read as "-") -> canonical name.
_FLAGS = {
    "ar": "ar",
    "aspect": "ar",
    "seed": "seed",
    "no": "no",
    "chaos": "chaos",
    "c": "chaos",
    "stylize": "stylize",
    "s": "stylize",
    "steps": "steps",
    "cfg": "cfg",
    "sampler": "sampler",
    "model": "model",
    "lora": "lora",
    "tile": "tile",
    "quality": "quality",
    "q": "quality",
    "repeat": "repeat",
    "r": "repeat",
    "fast": "fast",
    "relax": "relax",
    "iw": "iw",
    "clip-skip": "clip-skip",
}
_SWITCHES = {"tile", "fast", "relax"}  # flags without a value
_TEXT_FLAGS = {"no", "sampler", "lora"}  # the value runs up to the next flag
_REPEATABLE = {"no", "lora"}
FLAG_NAMES: tuple[str, ...] = tuple(dict.fromkeys(_FLAGS.values()))
"""Every flag the grammar accepts, by canonical name."""
_KNOWN_FLAGS = ", ".join(f"--{name}" for name in FLAG_NAMES)


def _parse_job(text: str, pixel_budget: int, size_step: int) -> JobSpec:
    # Order matters for format/parse agreement: LoRA tags come out before dashes and words
    # are read, so a tag can never hide a flag or a URL that shows up once it is gone.
    text, loras = _take_lora_tags(text)
    words = _LONG_DASH.sub("--", text).split()

    image_urls: list[str] = []
    i = 0
    while i < len(words) and _looks_like_url(words[i]):
        image_urls.append(_check_url(words[i]))
        i += 1
    if len(image_urls) > MAX_IMAGES:
        raise PromptError(image_urls[MAX_IMAGES], f"at most {MAX_IMAGES} image URLs per prompt")
    start = i
    while i < len(words) and not words[i].startswith("--"):
        i += 1
    parts = _split_parts(" ".join(words[start:i]))

    values: dict[str, object] = {}  # canonical flag name -> checked value
    written: dict[str, str] = {}  # canonical flag name -> the flag as typed, for errors
    negatives: list[str] = []
    for flag, name, args in _read_flags(words[i:]):
        written[name] = " ".join([flag, *args])
        if name == "no":
            negatives.append(_negative(flag, args))
        elif name == "lora":
            loras += _lora_flag(flag, args)
        else:
            values[name] = _flag_value(flag, name, args)

    if not parts and not image_urls:
        raise PromptError(
            "", "the prompt is empty: describe the image before the flags, or start with an image URL"
        )
    prompt_chars = len(" ".join(part.text for part in parts))
    if prompt_chars > MAX_PROMPT_CHARS:
        raise PromptError(
            "", f"the prompt is {prompt_chars:,} characters long; the limit is {MAX_PROMPT_CHARS:,}"
        )
    negative_prompt = ", ".join(negatives)
    if len(negative_prompt) > MAX_PROMPT_CHARS:
        raise PromptError(
            "--no",
            f"the negative prompt is {len(negative_prompt):,} characters long; the limit is {MAX_PROMPT_CHARS:,}",
        )
    _check_loras(loras)
    if "iw" in values and not image_urls:
        raise PromptError(written["iw"], "image weight needs an image prompt: start with an image URL")
    if "fast" in values and "relax" in values:
        raise PromptError(written["relax"], "--fast and --relax cannot be combined")

    aspect = values.get("ar", (1, 1))
    assert isinstance(aspect, tuple)
    width, height = size_for_aspect(aspect[0], aspect[1], pixel_budget=pixel_budget, step=size_step)
    lane = Lane.FAST if "fast" in values else Lane.RELAX if "relax" in values else None
    return JobSpec(
        parts=parts,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        aspect_ratio=aspect,
        seed=_opt_int(values.get("seed")),
        chaos=_opt_int(values.get("chaos")) or 0,
        stylize=_int_or(values.get("stylize"), 100),
        steps=_opt_int(values.get("steps")),
        cfg=_opt_float(values.get("cfg")),
        sampler=_opt_str(values.get("sampler")),
        model=_opt_str(values.get("model")),
        loras=tuple(loras),
        tile="tile" in values,
        quality=_opt_float(values.get("quality")) or 1.0,
        repeat=_int_or(values.get("repeat"), 1),
        lane=lane,
        image_urls=tuple(image_urls),
        image_weight=_opt_float(values.get("iw")),
        clip_skip=_opt_int(values.get("clip-skip")),
    )


def _take_lora_tags(text: str) -> tuple[str, list[LoraRef]]:
    loras: list[LoraRef] = []

    def take(match: re.Match[str]) -> str:
        tag, name, weight = match.group(0), match.group(1), match.group(2)
        loras.append(LoraRef(_lora_name(tag, name), _lora_weight(tag, weight)))
        return " "  # a space, so "a<lora:x>b" does not glue "a" and "b" into one word

    text = _LORA_TAG.sub(take, text)
    left = _LORA_OPEN.search(text)
    if left:
        raise PromptError(
            _word_at(text, left.start()), "a LoRA tag looks like <lora:name> or <lora:name:0.8>"
        )
    return text, loras


def _lora_name(token: str, name: str) -> str:
    if not _LORA_NAME.fullmatch(name):
        raise PromptError(token, "a LoRA name is letters, digits, '.', '_' and '-' (up to 100)")
    return name


def _lora_weight(token: str, weight: str | None) -> float:
    if weight is None or weight == "":
        return 1.0
    return _float_in(token, weight, -2.0, 2.0, "LoRA weight")


def _lora_flag(flag: str, args: list[str]) -> list[LoraRef]:
    entries = [entry for entry in re.split(r"[,\s]+", " ".join(args)) if entry]
    if not entries:
        raise PromptError(flag, "needs a LoRA name, e.g. --lora film_grain:0.6")
    loras = []
    for entry in entries:
        token = f"{flag} {entry}"
        name, sep, weight = entry.partition(":")
        if ":" in weight:
            raise PromptError(token, "write a LoRA as name or name:weight, e.g. film_grain:0.6")
        loras.append(LoraRef(_lora_name(token, name), _lora_weight(token, weight if sep else None)))
    return loras


def _check_loras(loras: Sequence[LoraRef]) -> None:
    seen: set[str] = set()
    for lora in loras:
        if lora.name.lower() in seen:
            raise PromptError(lora.name, "this LoRA is given twice; give it once with one weight")
        seen.add(lora.name.lower())
    if len(loras) > MAX_LORAS:
        raise PromptError(loras[MAX_LORAS].name, f"at most {MAX_LORAS} LoRAs per prompt")


def _looks_like_url(word: str) -> bool:
    lowered = word.lower()
    if lowered.startswith("<") and lowered.endswith(">"):  # Discord's <url> hides the embed
        lowered = lowered[1:-1]
    return lowered.startswith(("http://", "https://"))


def _check_url(word: str) -> str:
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


def _split_parts(text: str) -> tuple[PromptPart, ...]:
    """Split ``a::2 b`` into weighted parts, checking each part's attention syntax."""
    parts: list[PromptPart] = []
    position = 0
    for match in _MULTI.finditer(text):
        part_text = text[position : match.start()].strip()
        separator = match.group(0)
        if not part_text:
            raise PromptError(separator, "there is no prompt text before this '::'")
        weight = 1.0 if match.group(1) is None else float(match.group(1))
        low, high = PART_WEIGHT_RANGE
        if not low <= weight <= high:
            raise PromptError(
                f"{part_text}{separator}", f"prompt weights must be between {_num(low)} and {_num(high)}"
            )
        parts.append(PromptPart(part_text, weight))
        position = match.end()
    rest = text[position:].strip()
    if rest:
        parts.append(PromptPart(rest))

    if len(parts) > MAX_PARTS:
        raise PromptError(f"{parts[MAX_PARTS].text}::", f"at most {MAX_PARTS} multi-prompt parts")
    for part in parts:
        first_word = part.text.split(" ", 1)[0]
        if first_word.startswith("--") or _LONG_DASH.match(first_word):
            raise PromptError(
                first_word, "a flag needs a space before it (after '::2', write '::2 --ar 1:1')"
            )
        _check_attention(part.text)
    total = sum(part.weight for part in parts)
    if parts and total <= 0:
        raise PromptError(
            " ".join(f"::{_num(p.weight)}" for p in parts),
            f"multi-prompt weights add up to {_num(total)}; the total must be above 0",
        )
    return tuple(parts)


_CLOSING = {")": "(", "]": "["}


def _check_attention(text: str) -> None:
    """Check A1111 attention syntax: balanced ``()``/``[]``, sane ``(word:1.3)`` weights."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # \( and \) are literal brackets in A1111
            i += 2
            continue
        if ch in "([":
            stack.append((ch, i))
            if len(stack) > MAX_ATTENTION_DEPTH:
                raise PromptError(_word_at(text, i), f"brackets nest more than {MAX_ATTENTION_DEPTH} deep")
        elif ch in _CLOSING:
            if not stack or stack[-1][0] != _CLOSING[ch]:
                raise PromptError(
                    _word_at(text, i), f"unbalanced '{ch}': there is no '{_CLOSING[ch]}' before it"
                )
            _, start = stack.pop()
            if ch == ")":
                _check_attention_weight(text, start, i)
        i += 1
    if stack:
        ch, start = stack[-1]
        closer = ")" if ch == "(" else "]"
        raise PromptError(
            _word_at(text, start), f"unbalanced '{ch}': every '{ch}' needs a closing '{closer}'"
        )


def _check_attention_weight(text: str, start: int, end: int) -> None:
    match = _ATTENTION_WEIGHT.search(text, start + 1, end)
    if match is None:
        return
    token = text[start : end + 1]
    try:
        weight = float(match.group(1))
    except ValueError:
        raise PromptError(token, "the attention weight after ':' must be a number, e.g. (word:1.3)") from None
    low, high = ATTENTION_WEIGHT_RANGE
    if not low <= weight <= high:
        raise PromptError(token, f"attention weights must be between {_num(low)} and {_num(high)}")


# --------------------------------------------------------------------------- flags


def _read_flags(words: list[str]) -> list[tuple[str, str, list[str]]]:
    """Group words into ``(flag as typed, canonical name, values)``; reject unknown/repeated flags."""
    flags: list[tuple[str, str, list[str]]] = []
    seen: dict[str, str] = {}
    for word in words:
        if word.startswith("--"):
            name = _FLAGS.get(word[2:].lower().replace("_", "-"))
            if name is None:
                raise PromptError(word, _unknown_flag_reason(word))
            if name in seen and name not in _REPEATABLE:
                raise PromptError(word, f"given twice (already set by {seen[name]}); give each flag once")
            seen[name] = word
            flags.append((word, name, []))
        else:
            flags[-1][2].append(word)
    return flags


def _unknown_flag_reason(word: str) -> str:
    if word == "--":
        return f"a flag needs a name; known flags: {_KNOWN_FLAGS}"
    close = difflib.get_close_matches(word[2:].lower(), list(_FLAGS), n=1, cutoff=0.6)
    if close:
        return f"unknown flag; did you mean --{close[0]}? Known flags: {_KNOWN_FLAGS}"
    return f"unknown flag; known flags: {_KNOWN_FLAGS}"


def _flag_value(flag: str, name: str, args: list[str]) -> object:
    if name in _SWITCHES:
        if args:
            raise PromptError(args[0], f"unexpected text after {flag}; the prompt goes before the flags")
        return True
    if name in _TEXT_FLAGS:  # only --sampler reaches here; --no and --lora are handled by the caller
        if not args:
            raise PromptError(flag, "needs a sampler name, e.g. --sampler DPM++ 2M Karras")
        sampler = " ".join(args)
        try:
            return canonical_sampler(sampler)
        except PromptError as exc:
            raise PromptError(f"{flag} {sampler}", exc.reason) from None
    parse_value = _VALUE_PARSERS[name]
    if not args:
        raise PromptError(flag, f"needs a value, e.g. {flag} {_EXAMPLES[name]}")
    # The value is checked before any stray words, so "--ar 99:1 a cat" names the ratio.
    value = parse_value(f"{flag} {args[0]}", args[0])
    if len(args) > 1:
        raise PromptError(
            args[1], f"unexpected text after {flag} {args[0]}; the prompt goes before the flags"
        )
    return value


def _negative(flag: str, args: list[str]) -> str:
    value = " ".join(args).strip(" ,")
    if not value:
        raise PromptError(flag, "needs the things to leave out, e.g. --no text, watermark")
    _check_attention(value)
    return value


def _aspect(token: str, value: str) -> tuple[int, int]:
    match = _RATIO.fullmatch(value)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise PromptError(token, "aspect ratio must be two whole numbers like 16:9")
    w, h = int(match.group(1)), int(match.group(2))
    if w > ASPECT_LIMIT * h or h > ASPECT_LIMIT * w:
        raise PromptError(token, f"aspect ratio must be between 1:{ASPECT_LIMIT} and {ASPECT_LIMIT}:1")
    divisor = math.gcd(w, h)
    return (w // divisor, h // divisor)


def _int_in(token: str, value: str, low: int, high: int, what: str) -> int:
    if not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise PromptError(token, f"{what} must be a whole number from {low} to {high}")
    return int(value)


def _float_in(token: str, value: str, low: float, high: float, what: str) -> float:
    if not _FLOAT.fullmatch(value) or not low <= float(value) <= high:
        raise PromptError(token, f"{what} must be a number from {_num(low)} to {_num(high)}")
    return float(value)


def _quality(token: str, value: str) -> float:
    if not _FLOAT.fullmatch(value) or float(value) not in QUALITY_VALUES:
        raise PromptError(token, "quality must be one of " + ", ".join(_num(q) for q in QUALITY_VALUES))
    return float(value)


def _model(token: str, value: str) -> str:
    slug = value.lower()
    if not _MODEL_NAME.fullmatch(slug):
        raise PromptError(token, "a model name is letters, digits, '.', '_' and '-' (up to 64)")
    return slug


_VALUE_PARSERS: dict[str, Callable[[str, str], object]] = {
    "ar": _aspect,
    "seed": lambda t, v: _int_in(t, v, 0, SEED_MAX, "seed"),
    "chaos": lambda t, v: _int_in(t, v, 0, 100, "chaos"),
    "stylize": lambda t, v: _int_in(t, v, 0, 1000, "stylize"),
    "steps": lambda t, v: _int_in(t, v, 1, 150, "steps"),
    "cfg": lambda t, v: _float_in(t, v, 0.0, 30.0, "cfg"),
    "model": _model,
    "quality": _quality,
    "repeat": lambda t, v: _int_in(t, v, 1, MAX_JOBS, "repeat"),
    "iw": lambda t, v: _float_in(t, v, 0.0, 3.0, "image weight"),
    "clip-skip": lambda t, v: _int_in(t, v, 1, 12, "clip skip"),
}
_EXAMPLES = {
    "ar": "16:9",
    "seed": "1234",
    "chaos": "50",
    "stylize": "250",
    "steps": "30",
    "cfg": "7",
    "model": "sdxl",
    "quality": "2",
    "repeat": "4",
    "iw": "1.5",
    "clip-skip": "2",
}


# --------------------------------------------------------------------------- helpers


def _word_at(text: str, index: int) -> str:
    """The whitespace-delimited word around ``index``, for naming a token in an error."""
    start = index
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = index
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[start:end]
    return word if len(word) <= 60 else word[:60] + "…"


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int_or(value: object, default: int) -> int:
    found = _opt_int(value)
    return default if found is None else found


def _opt_float(value: object) -> float | None:
    return float(value) if isinstance(value, float) else None


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
