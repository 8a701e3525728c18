"""Properties of the job grammar over generated specs and prompt texts.

* ``parse(format(spec)) == spec`` for every spec the parser can produce, whether the spec
  is built field by field or comes from parsing a generated prompt.
* Whatever the text, the parser either returns specs or raises :class:`PromptError`.
"""

from __future__ import annotations

import math
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.prompt import PromptError, format, parse, parse_all
from core.samplers import SAMPLER_NAMES
from core.sizes import size_for_aspect
from core.spec import JobSpec, Lane, LoraRef, PromptPart

# Modest example counts keep this file near ten seconds on a busy machine.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- specs


def hundredths(low: int, high: int) -> st.SearchStrategy[float]:
    """Numbers with at most two decimals, as users type them."""
    return st.integers(low * 100, high * 100).map(lambda n: n / 100)


plain_words = st.text(string.ascii_letters + string.digits + "'.,!?&:é-", min_size=1, max_size=8).filter(
    lambda w: "::" not in w and not w.startswith("-")
)
attention_words = st.sampled_from(["(red:1.2)", "((cat))", "[blur]", "\\(x\\)", "(a b:0.5)", "[from:to:0.5]"])
words = st.one_of(plain_words, plain_words, attention_words)
phrases = st.lists(words, min_size=1, max_size=6).map(" ".join)
urls = st.sampled_from(
    ["https://cdn.example.com/a.png", "http://example.org/x.jpg?w=1&h=2", "https://e.com/%20b.webp"]
)


def slugs(first: str) -> st.SearchStrategy[str]:
    """Names as the registry spells them: a letter or digit, then letters, digits, '._-'."""
    rest = st.text(first + "._-", max_size=10)
    return st.builds(lambda a, b: a + b, st.sampled_from(first), rest)


# Strategies are built once here: building them inside a composite on every draw made the
# spec property three times slower.
part_weights = hundredths(-100, 100)
lora_weights = hundredths(-2, 2)
lora_names = st.lists(slugs(string.ascii_letters + string.digits), max_size=3, unique_by=str.lower)
negatives = st.one_of(st.just(""), phrases.filter(lambda n: n == n.strip(" ,")))
sides = st.integers(1, 40)
seeds = st.none() | st.integers(0, 2**32 - 1)
step_counts = st.none() | st.integers(1, 150)
cfgs = st.none() | hundredths(0, 30)
samplers = st.none() | st.sampled_from(SAMPLER_NAMES)
models = st.none() | slugs(string.ascii_lowercase + string.digits)
clip_skips = st.none() | st.integers(1, 12)
image_weights = st.none() | hundredths(0, 3)


@st.composite
def prompt_parts(draw: st.DrawFn) -> tuple[PromptPart, ...]:
    if draw(st.booleans()):
        return (PromptPart(draw(phrases)),)
    texts = draw(st.lists(phrases, min_size=1, max_size=4))
    weights = [draw(part_weights) for _ in texts]
    if sum(weights) <= 0:  # the parser refuses these; flip the signs rather than discard the example
        weights = [abs(w) for w in weights]
        weights[0] = weights[0] or 1.0
    return tuple(PromptPart(text, weight) for text, weight in zip(texts, weights, strict=True))


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    image_urls = tuple(draw(st.lists(urls, max_size=2)))
    parts: tuple[PromptPart, ...] = ()  # an image-only prompt has no text
    if not image_urls or draw(st.booleans()):
        parts = draw(prompt_parts())
    h = draw(sides)
    w = min(max(draw(sides), -(-h // 4)), 4 * h)  # within 1:4 .. 4:1
    aspect = (w // math.gcd(w, h), h // math.gcd(w, h))
    width, height = size_for_aspect(*aspect, pixel_budget=512 * 512, step=64)
    return JobSpec(
        parts=parts,
        negative_prompt=draw(negatives),
        width=width,
        height=height,
        aspect_ratio=aspect,
        chaos=draw(st.integers(0, 100)),
        stylize=draw(st.integers(0, 1000)),
        loras=tuple(LoraRef(name, draw(lora_weights)) for name in draw(lora_names)),
        tile=draw(st.booleans()),
        quality=draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])),
        repeat=draw(st.integers(1, 40)),
        lane=draw(st.sampled_from([None, Lane.FAST, Lane.RELAX])),
        image_urls=image_urls,
        image_weight=draw(image_weights) if image_urls else None,
        seed=draw(seeds),
        steps=draw(step_counts),
        cfg=draw(cfgs),
        sampler=draw(samplers),
        model=draw(models),
        clip_skip=draw(clip_skips),
    )


@SETTINGS
@given(specs())
def test_format_then_parse_gives_the_spec_back(spec: JobSpec) -> None:
    text = format(spec)
    assert parse(text) == spec
    assert format(parse(text)) == text


# --------------------------------------------------------------------------- prompt texts

# Pieces a user might type, valid and not, glued with and without spaces.
pieces = st.one_of(
    words,
    st.sampled_from(
        [
            "--ar 16:9", "--ar 2:3", "—ar 4:1", "--aspect 9:16", "--ar 9:1", "--seed 42", "--seed -1",
            "--no", "--no dogs,", "—no blur", "--c 20", "--chaos 101", "--s 250", "--stylize", "--steps 30",
            "--cfg 7.5", "--cfg 0.00001", "--sampler dpmpp_2m_karras", "--sampler Euler a", "--sampler nope",
            "--model SDXL", "--model a/b", "--lora film:0.5", "--lora x:3", "--tile", "--q .5", "--quality 3",
            "--r 2", "--fast", "--relax", "--iw 1.5", "--clip-skip 2", "--v 6", "--", "::", "::2", "::-1",
            "::0.5", "::1e3", "<lora:film:0.6>", "<lora:x>", "<lora:", "{red, blue}", "{a, {b, c}}", "{",
            "}", "\\,", "(", ")", "[", "]", "((x))", "(y:1.4)", "(z:9)", "https://e.com/a.png",
            "<https://e.com/b.png>", "http://", "—", "–", ",", ":", "\n", "  ",
        ]
    ),
)  # fmt: skip
prompt_texts = st.lists(st.tuples(pieces, st.sampled_from([" ", " ", ""])), max_size=12).map(
    lambda items: "".join(piece + sep for piece, sep in items)
)


@SETTINGS
@given(prompt_texts)
def test_parsed_prompts_format_back_to_the_same_spec(text: str) -> None:
    try:
        parsed = parse_all(text)
    except PromptError as err:
        assert str(err)  # every refusal says something
        return
    for spec in parsed:
        assert parse(format(spec)) == spec


@SETTINGS
@given(st.one_of(prompt_texts, st.text(max_size=200)))
def test_parser_raises_only_prompt_errors(text: str) -> None:
    # Any other exception escapes and fails the test.
    try:
        parse_all(text)
    except PromptError as err:
        assert str(err)
