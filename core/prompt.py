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
import re
from collections.abc import Sequence

from core import flags, permutations
from core.attention import check_attention, word_at
from core.errors import PromptError
from core.flags import MAX_REPEAT, Flag, Takes, check_url, looks_like_url, num
from core.sizes import DEFAULT_PIXEL_BUDGET, DEFAULT_SIZE_STEP, size_for_aspect
from core.spec import ControlRef, JobSpec, LoraRef, PromptPart
from core.text import unstorable

__all__ = [
    "MAX_JOBS",
    "MAX_PROMPT_CHARS",
    "PromptError",
    "format",
    "parse",
    "parse_all",
]

MAX_JOBS = MAX_REPEAT
"""The most jobs one permutation prompt may expand to (and the most ``--repeat`` queues)."""
MAX_PROMPT_CHARS = 2000
"""The longest prompt text (and, separately, the longest ``--no`` text)."""
MAX_INPUT_CHARS = 20_000
"""The longest raw input, before permutations expand (bounds the work one request costs)."""
MAX_IMAGES = 5
MAX_LORAS = 8
MAX_PARTS = 20
PART_WEIGHT_RANGE = (-100.0, 100.0)


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
    tree, first_group = permutations.read_braces(_check_input(text))
    count = permutations.count(tree)
    if count > 1:
        raise PromptError(
            first_group,
            f"this prompt expands to {permutations.count_words(count)} jobs; use parse_all() for permutations",
        )
    return _parse_job(permutations.expand(tree)[0], pixel_budget, size_step)


def parse_all(
    text: str, *, pixel_budget: int = DEFAULT_PIXEL_BUDGET, size_step: int = DEFAULT_SIZE_STEP
) -> list[JobSpec]:
    """Expand ``{a, b}`` permutations in ``text`` and parse each result, in order.

    Arguments are as for :func:`parse`.

    Raises:
        PromptError: on any mistake in any expansion, or more than :data:`MAX_JOBS` jobs.
    """
    tree, first_group = permutations.read_braces(_check_input(text))
    count = permutations.count(tree)
    if count > MAX_JOBS:
        raise PromptError(
            first_group, f"this prompt expands to {permutations.count_words(count)} jobs; the limit is {MAX_JOBS}"
        )
    return [_parse_job(job_text, pixel_budget, size_step) for job_text in permutations.expand(tree)]


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
        words += [f"{part.text} ::{num(part.weight)}" for part in spec.parts]
    return " ".join(words + flags.write(spec))


# --------------------------------------------------------------------------- input

def _check_input(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, not {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise PromptError("", f"the input is {len(text):,} characters long; the limit is {MAX_INPUT_CHARS:,}")
    bad = unstorable(text)
    if bad is not None:
        raise PromptError("", f"the prompt holds an unusable character ({bad}); remove it")
    return text


# --------------------------------------------------------------------------- one job

_LORA_TAG = re.compile(r"<lora:([^:<>\s]*)(?::([^<>\s]*))?>", re.IGNORECASE)
_LORA_OPEN = re.compile(r"<lora:", re.IGNORECASE)
# A run of dashes at the start of a word holding at least one long dash, before a letter.
_LONG_DASH = re.compile(r"(?<!\S)(?=[-—–]*[—–])[-—–]+(?=[A-Za-z])")
_MULTI = re.compile(r"::(-?(?:[0-9]{1,10}(?:\.[0-9]{1,20})?|\.[0-9]{1,20}))?")

FLAG_NAMES: tuple[str, ...] = flags.NAMES
"""Every flag the grammar accepts, by canonical name (:mod:`core.flags`)."""
_KNOWN_FLAGS = ", ".join(f"--{name}" for name in FLAG_NAMES)


def _parse_job(text: str, pixel_budget: int, size_step: int) -> JobSpec:
    # Order matters for format/parse agreement: LoRA tags come out before dashes and words
    # are read, so a tag can never hide a flag or a URL that shows up once it is gone.
    text, loras = _take_lora_tags(text)
    words = _LONG_DASH.sub("--", text).split()

    image_urls: list[str] = []
    i = 0
    while i < len(words) and looks_like_url(words[i]):
        image_urls.append(check_url(words[i]))
        i += 1
    if len(image_urls) > MAX_IMAGES:
        raise PromptError(image_urls[MAX_IMAGES], f"at most {MAX_IMAGES} image URLs per prompt")
    start = i
    while i < len(words) and not words[i].startswith("--"):
        i += 1
    parts = _split_parts(" ".join(words[start:i]))

    fields: dict[str, object] = {}  # JobSpec field -> checked value
    setters: dict[str, str] = {}  # JobSpec field -> the flag as typed that set it
    repeated: dict[str, tuple[Flag, str, list[object]]] = {}  # flags given more than once
    for flag, typed, args in _read_flags(words[i:]):
        token = " ".join([typed, *args])
        value = _flag_value(flag, typed, args)
        if flag.combine is not None:
            repeated.setdefault(flag.field, (flag, typed, []))[2].append(value)
            continue
        if flag.field in setters:
            raise PromptError(token, f"{setters[flag.field]} and {typed} cannot be combined")
        if flag.needs_image_prompt and not image_urls:
            raise PromptError(token, f"--{flag.name} needs an image prompt: start with an image URL")
        fields[flag.field] = value
        setters[flag.field] = typed
    for field, (flag, typed, values) in repeated.items():
        assert flag.combine is not None
        fields[field] = flag.combine(typed, values)
    fields["loras"] = (*loras, *fields.get("loras", ()))  # type: ignore[misc]

    for typed in setters.values():
        needed = flags.lookup(typed)
        if needed is not None and needed.needs_flag is not None:
            other = flags.lookup(needed.needs_flag)
            if other is not None and not fields.get(other.field):
                raise PromptError(typed, f"weighs --{other.name}, which this prompt does not have")
    controls = fields.get("controls", ())
    if controls:
        _check_controls(controls, image_urls, "image_weight" in fields)  # type: ignore[arg-type]
    if not parts and not image_urls:
        raise PromptError(
            "", "the prompt is empty: describe the image before the flags, or start with an image URL"
        )
    prompt_chars = len(" ".join(part.text for part in parts))
    if prompt_chars > MAX_PROMPT_CHARS:
        raise PromptError(
            "", f"the prompt is {prompt_chars:,} characters long; the limit is {MAX_PROMPT_CHARS:,}"
        )
    _check_loras(fields["loras"])  # type: ignore[arg-type]
    aspect = fields.get("aspect_ratio", (1, 1))
    assert isinstance(aspect, tuple)
    width, height = size_for_aspect(aspect[0], aspect[1], pixel_budget=pixel_budget, step=size_step)
    return JobSpec(parts=parts, width=width, height=height, image_urls=tuple(image_urls), **fields)  # type: ignore[arg-type]


def _check_controls(controls: tuple[ControlRef, ...], image_urls: list[str], weighted: bool) -> None:
    """``--cn`` takes the prompt's pictures as control pictures: one for every control, or one each."""
    if not image_urls:
        raise PromptError("--cn", "needs a picture to follow: attach one or start the prompt with its link")
    if len(image_urls) not in (1, len(controls)):
        raise PromptError(
            "--cn",
            f"{len(controls)} controls take one picture for all or one each, not {len(image_urls)}",
        )
    if weighted:
        raise PromptError("--iw", "with --cn the pictures are controls, not image prompts, so --iw has nothing to weigh")


def _take_lora_tags(text: str) -> tuple[str, list[LoraRef]]:
    loras: list[LoraRef] = []

    def take(match: re.Match[str]) -> str:
        tag, name, weight = match.group(0), match.group(1), match.group(2)
        loras.append(LoraRef(flags.lora_name(tag, name), flags.lora_weight(tag, weight)))
        return " "  # a space, so "a<lora:x>b" does not glue "a" and "b" into one word

    text = _LORA_TAG.sub(take, text)
    left = _LORA_OPEN.search(text)
    if left:
        raise PromptError(
            word_at(text, left.start()), "a LoRA tag looks like <lora:name> or <lora:name:0.8>"
        )
    return text, loras


def _check_loras(loras: Sequence[LoraRef]) -> None:
    seen: set[str] = set()
    for lora in loras:
        if lora.name.lower() in seen:
            raise PromptError(lora.name, "this LoRA is given twice; give it once with one weight")
        seen.add(lora.name.lower())
    if len(loras) > MAX_LORAS:
        raise PromptError(loras[MAX_LORAS].name, f"at most {MAX_LORAS} LoRAs per prompt")


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
                f"{part_text}{separator}", f"prompt weights must be between {num(low)} and {num(high)}"
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
        check_attention(part.text)
    total = sum(part.weight for part in parts)
    if parts and total <= 0:
        raise PromptError(
            " ".join(f"::{num(p.weight)}" for p in parts),
            f"multi-prompt weights add up to {num(total)}; the total must be above 0",
        )
    return tuple(parts)


# --------------------------------------------------------------------------- flags


def _read_flags(words: list[str]) -> list[tuple[Flag, str, list[str]]]:
    """Group words into ``(flag, flag as typed, values)``; reject unknown and repeated flags."""
    found: list[tuple[Flag, str, list[str]]] = []
    seen: dict[str, str] = {}
    for word in words:
        if word.startswith("--"):
            flag = flags.lookup(word)
            if flag is None:
                raise PromptError(word, _unknown_flag_reason(word))
            if flag.name in seen and flag.combine is None:
                raise PromptError(word, f"given twice (already set by {seen[flag.name]}); give each flag once")
            seen[flag.name] = word
            found.append((flag, word, []))
        else:
            found[-1][2].append(word)
    return found


def _unknown_flag_reason(word: str) -> str:
    if word == "--":
        return f"a flag needs a name; known flags: {_KNOWN_FLAGS}"
    close = difflib.get_close_matches(word[2:].lower(), list(flags.SPELLINGS), n=1, cutoff=0.6)
    if close:
        return f"unknown flag; did you mean --{close[0]}? Known flags: {_KNOWN_FLAGS}"
    return f"unknown flag; known flags: {_KNOWN_FLAGS}"


def _flag_value(flag: Flag, typed: str, args: list[str]) -> object:
    if flag.takes is Takes.SWITCH:
        if args:
            raise PromptError(args[0], f"unexpected text after {typed}; the prompt goes before the flags")
        return flag.switch_value
    assert flag.read is not None
    if not args:
        example = f", e.g. {typed} {flag.example}" if flag.example else ""
        raise PromptError(typed, f"needs {flag.needs}{example}")
    if flag.takes is Takes.TEXT:
        return flag.read(typed, " ".join(args))
    # The value is checked before any stray words, so "--ar 99:1 a cat" names the ratio.
    value = flag.read(typed, args[0])
    if len(args) > 1:
        raise PromptError(args[1], f"unexpected text after {typed} {args[0]}; the prompt goes before the flags")
    return value
