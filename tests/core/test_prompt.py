"""Examples of the job grammar: what each flag does and how each mistake is reported."""

from __future__ import annotations

import pickle
import re

import pytest

from core.prompt import MAX_JOBS, PromptError, format, parse, parse_all
from core.spec import JobSpec, Lane, LoraRef, PromptPart


def error(text: str) -> PromptError:
    with pytest.raises(PromptError) as info:
        parse_all(text)
    return info.value


# --------------------------------------------------------------------------- plain prompts


def test_plain_prompt_gets_defaults() -> None:
    spec = parse("a cat in a hat")
    assert spec == JobSpec(parts=(PromptPart("a cat in a hat"),))
    assert (spec.width, spec.height, spec.aspect_ratio) == (512, 512, (1, 1))
    assert spec.seed is None and spec.stylize == 100 and spec.quality == 1.0 and spec.repeat == 1


def test_whitespace_is_normalised() -> None:
    spec = parse("  a   cat\n\tin  a hat  --no   dogs \n  blur ")
    assert spec.prompt == "a cat in a hat"
    assert spec.negative_prompt == "dogs blur"


def test_brief_example_sixteen_by_nine() -> None:
    spec = parse("a cat --ar 16:9 --seed 42 --no dogs, blur")
    assert spec.seed == 42
    assert spec.negative_prompt == "dogs, blur"
    assert spec.aspect_ratio == (16, 9)
    assert spec.width > spec.height
    assert abs((spec.width / spec.height) / (16 / 9) - 1) < 0.05
    assert spec.width % 64 == 0 and spec.height % 64 == 0


@pytest.mark.parametrize("text", ["", "   ", "--ar 16:9", "<lora:film> --seed 1", "\n\t"])
def test_empty_prompt_is_refused(text: str) -> None:
    err = error(text)
    assert "empty" in str(err)


def test_image_only_prompt_is_allowed() -> None:
    spec = parse("https://cdn.example.com/a.png https://cdn.example.com/b.png --iw 2")
    assert spec.image_urls == ("https://cdn.example.com/a.png", "https://cdn.example.com/b.png")
    assert spec.parts == ()
    assert spec.image_weight == 2.0


def test_image_urls_then_text() -> None:
    spec = parse("<https://cdn.example.com/a.png?ex=1&is=2> a cat in the style of this")
    assert spec.image_urls == ("https://cdn.example.com/a.png?ex=1&is=2",)
    assert spec.prompt == "a cat in the style of this"


def test_only_leading_urls_are_image_prompts() -> None:
    spec = parse("a cat like https://example.com/cat.png")
    assert spec.image_urls == ()
    assert spec.prompt == "a cat like https://example.com/cat.png"


def test_bad_image_url_is_named() -> None:
    err = error("https:// a cat")
    assert err.token == "https://"
    assert "URL" in err.reason


def test_too_many_image_urls() -> None:
    urls = " ".join(f"https://example.com/{n}.png" for n in range(6))
    err = error(urls + " cat")
    assert err.token == "https://example.com/5.png"
    assert "at most 5" in err.reason


def test_prompt_length_limit() -> None:
    assert parse("a" * 2000).prompt == "a" * 2000
    err = error("a" * 2001)
    assert "2,001 characters" in str(err) and "2,000" in str(err)


def test_negative_prompt_length_limit() -> None:
    err = error("cat --no " + "b" * 2001)
    assert err.token == "--no"
    assert "2,000" in err.reason


# --------------------------------------------------------------------------- aspect ratio


@pytest.mark.parametrize(
    ("text", "ratio", "size"),
    [
        ("x --ar 1:1", (1, 1), (512, 512)),
        ("x --ar 2:3", (2, 3), (384, 576)),
        ("x --aspect 3:2", (3, 2), (576, 384)),
        ("x --ar 4:1", (4, 1), (1024, 256)),
        ("x --ar 1:4", (1, 4), (256, 1024)),
        ("x --ar 32:18", (16, 9), (704, 384)),
        ("x --AR 9:16", (9, 16), (384, 704)),
    ],
)
def test_aspect_ratio_sets_size(text: str, ratio: tuple[int, int], size: tuple[int, int]) -> None:
    spec = parse(text)
    assert spec.aspect_ratio == ratio
    assert (spec.width, spec.height) == size


def test_pixel_budget_and_step_change_size() -> None:
    spec = parse("x --ar 16:9", pixel_budget=1024 * 1024)
    assert (spec.width, spec.height) == (1344, 768)
    spec = parse("x --ar 1:1", pixel_budget=768 * 768, size_step=8)
    assert (spec.width, spec.height) == (768, 768)


@pytest.mark.parametrize("value", ["99:1", "1:5", "5:1", "41:10"])
def test_aspect_ratio_beyond_four_to_one(value: str) -> None:
    err = error(f"x --ar {value}")
    assert str(err) == f"--ar {value}: aspect ratio must be between 1:4 and 4:1"


@pytest.mark.parametrize("value", ["16x9", "16:", "0:1", "1:0", "1.5:1", "wide", "16:9:1", "-1:2"])
def test_aspect_ratio_must_be_two_whole_numbers(value: str) -> None:
    err = error(f"x --ar {value}")
    assert err.token == f"--ar {value}"
    assert "16:9" in err.reason


def test_flag_first_prompt_names_the_bad_flag() -> None:
    err = error("--ar 99:1 x")
    assert err.token == "--ar 99:1"


def test_text_after_a_flag_value_is_refused() -> None:
    err = error("--ar 16:9 a cat")
    assert err.token == "a"
    assert "before the flags" in err.reason


# --------------------------------------------------------------------------- numeric flags


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("x --seed 0", "seed", 0),
        ("x --seed 4294967295", "seed", 4294967295),
        ("x --chaos 100", "chaos", 100),
        ("x --c 35", "chaos", 35),
        ("x --stylize 0", "stylize", 0),
        ("x --s 750", "stylize", 750),
        ("x --steps 1", "steps", 1),
        ("x --steps 150", "steps", 150),
        ("x --cfg 7.5", "cfg", 7.5),
        ("x --cfg 0", "cfg", 0.0),
        ("x --cfg 30", "cfg", 30.0),
        ("x --quality .25", "quality", 0.25),
        ("x --q 0.5", "quality", 0.5),
        ("x --q 2", "quality", 2.0),
        ("x --repeat 40", "repeat", 40),
        ("x --r 3", "repeat", 3),
        ("x --clip-skip 2", "clip_skip", 2),
        ("x --clip_skip 12", "clip_skip", 12),
    ],
)
def test_numeric_flags(text: str, field: str, value: object) -> None:
    assert getattr(parse(text), field) == value


@pytest.mark.parametrize(
    ("text", "token", "allowed"),
    [
        ("x --seed 4294967296", "--seed 4294967296", "0 to 4294967295"),
        ("x --seed -1", "--seed -1", "0 to 4294967295"),
        ("x --seed 1.5", "--seed 1.5", "whole number"),
        ("x --seed " + "9" * 5000, "--seed " + "9" * 5000, "0 to 4294967295"),
        ("x --chaos 101", "--chaos 101", "0 to 100"),
        ("x --c abc", "--c abc", "0 to 100"),
        ("x --stylize 1001", "--stylize 1001", "0 to 1000"),
        ("x --steps 0", "--steps 0", "1 to 150"),
        ("x --steps 151", "--steps 151", "1 to 150"),
        ("x --cfg 30.5", "--cfg 30.5", "0 to 30"),
        ("x --cfg nan", "--cfg nan", "0 to 30"),
        ("x --cfg 1e1", "--cfg 1e1", "0 to 30"),
        ("x --quality 3", "--quality 3", "0.25, 0.5, 1, 2"),
        ("x --q 0.75", "--q 0.75", "0.25, 0.5, 1, 2"),
        ("x --repeat 41", "--repeat 41", "1 to 40"),
        ("x --r 0", "--r 0", "1 to 40"),
        ("x --clip-skip 13", "--clip-skip 13", "1 to 12"),
        ("https://e.com/a.png --iw 3.5", "--iw 3.5", "0 to 3"),
    ],
)
def test_out_of_range_values_name_flag_and_range(text: str, token: str, allowed: str) -> None:
    err = error(text)
    assert err.token == token
    assert allowed in err.reason
    assert str(err).startswith(token + ": ")


@pytest.mark.parametrize(
    "flag", ["--ar", "--seed", "--chaos", "--steps", "--cfg", "--model", "--quality", "--iw"]
)
def test_flag_without_value(flag: str) -> None:
    err = error(f"x {flag}")
    assert err.token == flag
    assert "needs a value" in err.reason


def test_flag_without_value_before_another_flag() -> None:
    err = error("x --seed --tile")
    assert err.token == "--seed"


# --------------------------------------------------------------------------- switches and lanes


def test_switches() -> None:
    spec = parse("x --tile --fast")
    assert spec.tile is True and spec.lane is Lane.FAST
    assert parse("x --relax").lane is Lane.RELAX
    assert parse("x").lane is None


def test_switch_takes_no_value() -> None:
    err = error("x --tile yes")
    assert err.token == "yes"


def test_fast_and_relax_conflict() -> None:
    err = error("x --fast --relax")
    assert err.token == "--relax"
    assert "cannot be combined" in err.reason


def test_image_weight_needs_an_image() -> None:
    err = error("a cat --iw 1.5")
    assert err.token == "--iw 1.5"
    assert "image" in err.reason


# --------------------------------------------------------------------------- flag names


def test_unknown_flag_suggests_a_close_name() -> None:
    err = error("a cat --sed 4")
    assert err.token == "--sed"
    assert "--seed" in err.reason


def test_style_takes_raw_only() -> None:
    assert parse("a cat --style RAW").raw and not parse("a cat").raw
    err = error("a cat --style 6")
    assert err.token == "--style 6" and "the only style is `raw`" in err.reason


@pytest.mark.parametrize("flag", ["--fancy", "--", "--123"])
def test_unknown_flags(flag: str) -> None:
    err = error(f"a cat {flag} 6")
    assert err.token == flag
    assert "--ar" in err.reason  # the list of known flags


def test_flags_are_case_insensitive() -> None:
    assert parse("x --SEED 5 --Tile").seed == 5


def test_flag_given_twice_is_refused_also_through_an_alias() -> None:
    err = error("x --chaos 5 --c 6")
    assert err.token == "--c"
    assert "--chaos" in err.reason
    assert error("x --tile --tile").token == "--tile"


def test_long_dashes_from_phone_keyboards() -> None:
    spec = parse("a cat —ar 16:9 –seed 7 —-no dogs")
    assert spec.aspect_ratio == (16, 9)
    assert spec.seed == 7
    assert spec.negative_prompt == "dogs"


def test_long_dash_inside_text_stays_text() -> None:
    spec = parse("sun—rise over the sea — calm")
    assert spec.prompt == "sun—rise over the sea — calm"


# --------------------------------------------------------------------------- negative prompt


def test_negative_runs_until_next_flag() -> None:
    spec = parse("a cat --no dogs, blurry photo, text --ar 2:3")
    assert spec.negative_prompt == "dogs, blurry photo, text"
    assert spec.aspect_ratio == (2, 3)


def test_repeated_negative_is_joined() -> None:
    spec = parse("a cat --no dogs --seed 3 --no blur, --no text")
    assert spec.negative_prompt == "dogs, blur, text"


@pytest.mark.parametrize("text", ["a cat --no", "a cat --no , --seed 1"])
def test_empty_negative_is_refused(text: str) -> None:
    err = error(text)
    assert err.token == "--no"


def test_negative_attention_syntax_is_checked() -> None:
    assert parse("x --no (blurry:1.2)").negative_prompt == "(blurry:1.2)"
    assert error("x --no (blurry").token == "(blurry"


# --------------------------------------------------------------------------- sampler, model, LoRA


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("DPM++ 2M Karras", "DPM++ 2M Karras"),
        ("dpmpp_2m_karras", "DPM++ 2M Karras"),
        ("dpm++ 2m karras", "DPM++ 2M Karras"),
        ("Euler a", "Euler a"),
        ("euler_ancestral", "Euler a"),
        ("k_euler_a", "Euler a"),
        ("ddim", "DDIM"),
    ],
)
def test_sampler_names(typed: str, stored: str) -> None:
    spec = parse(f"a cat --sampler {typed} --seed 1")
    assert spec.sampler == stored
    assert spec.seed == 1


def test_unknown_sampler_suggests_close_names() -> None:
    err = error("a cat --sampler eular a --steps 20")
    assert err.token == "--sampler eular a"
    assert "Euler a" in err.reason


def test_model_is_a_lower_case_slug() -> None:
    assert parse("x --model SDXL-Turbo").model == "sdxl-turbo"
    assert parse("x --model flux.1_schnell").model == "flux.1_schnell"
    err = error("x --model stabilityai/sdxl")
    assert err.token == "--model stabilityai/sdxl"
    assert error("x --model my model").token == "model"


def test_lora_tags_move_out_of_the_text() -> None:
    spec = parse("a <lora:film_grain:0.6> cat <LORA:detail> in a hat")
    assert spec.prompt == "a cat in a hat"
    assert spec.loras == (LoraRef("film_grain", 0.6), LoraRef("detail", 1.0))


def test_lora_flags() -> None:
    spec = parse("a cat --lora film:0.5 --seed 2 --lora detail, pixel:-1.5")
    assert spec.loras == (LoraRef("film", 0.5), LoraRef("detail", 1.0), LoraRef("pixel", -1.5))


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("a cat --lora film:2.5", "--lora film:2.5"),
        ("a cat <lora:film:-3>", "<lora:film:-3>"),
        ("a cat <lora:film:strong>", "<lora:film:strong>"),
        ("a cat --lora film:0.5:1", "--lora film:0.5:1"),
        ("a cat <lora:> x", "<lora:>"),
        ("a cat <lora:film x", "<lora:film"),
    ],
)
def test_bad_loras_are_named(text: str, token: str) -> None:
    assert error(text).token == token


def test_same_lora_twice_is_refused() -> None:
    err = error("a <lora:film:0.4> cat --lora film")
    assert err.token == "film"


def test_too_many_loras() -> None:
    loras = " ".join(f"--lora l{n}" for n in range(9))
    assert "at most 8" in error(f"x {loras}").reason


# --------------------------------------------------------------------------- multi-prompts


def test_multi_prompt_parts() -> None:
    assert parse("hot dog::2 bun").parts == (PromptPart("hot dog", 2.0), PromptPart("bun", 1.0))
    assert parse("hot:: dog").parts == (PromptPart("hot"), PromptPart("dog"))
    assert parse("space::1.5 ship::-.5").parts == (PromptPart("space", 1.5), PromptPart("ship", -0.5))
    assert parse("lonely tree::3").parts == (PromptPart("lonely tree", 3.0),)


def test_multi_prompt_weights_must_sum_above_zero() -> None:
    err = error("a::1 b::-1")
    assert "add up to 0" in err.reason
    assert error("a::-2").token == "::-2"


def test_multi_prompt_part_cannot_be_empty() -> None:
    assert error("::2 dog").token == "::2"
    assert error("a:: ::2 b").token == "::2"


def test_multi_prompt_weight_range() -> None:
    assert error("a::101 b").token == "a::101"


def test_flag_glued_to_a_weight_is_refused() -> None:
    err = error("a::2--ar 16:9")
    assert err.token == "--ar"
    assert "space" in err.reason


def test_single_colons_are_text() -> None:
    assert parse("time: 5 o'clock").prompt == "time: 5 o'clock"


# --------------------------------------------------------------------------- attention syntax


def test_attention_syntax_is_kept_verbatim() -> None:
    text = "a ((red)) [blurry] (cat:1.3) (a (nested:0.5) thing:1.1) \\(literal"
    assert parse(text).prompt == text


@pytest.mark.parametrize(
    ("text", "token", "reason"),
    [
        ("a ((red) cat", "((red)", "'('"),
        ("a red) cat", "red)", "')'"),
        ("a [red cat", "[red", "'['"),
        ("a (red] cat", "(red]", "']'"),
        ("a (red:5) cat", "(red:5)", "between 0 and 3"),
        ("a (red:-1) cat", "(red:-1)", "between 0 and 3"),
        ("a (red:1.2.3) cat", "(red:1.2.3)", "number"),
        ("(((((((((deep)))))))))", "(((((((((deep)))))))))", "8 deep"),
    ],
)
def test_bad_attention_syntax(text: str, token: str, reason: str) -> None:
    err = error(text)
    assert err.token == token
    assert reason in err.reason


# --------------------------------------------------------------------------- permutations


def test_permutations_expand_in_order() -> None:
    specs = parse_all("a {red, blue} {cat, dog}")
    assert [s.prompt for s in specs] == ["a red cat", "a red dog", "a blue cat", "a blue dog"]


def test_permutations_inside_flags() -> None:
    specs = parse_all("a cat --ar {1:1, 16:9} --seed 5")
    assert [s.aspect_ratio for s in specs] == [(1, 1), (16, 9)]
    assert {s.seed for s in specs} == {5}


def test_nested_permutations_and_escaped_comma() -> None:
    specs = parse_all("a {cat, {small, big} dog} {in red\\, white, }")
    assert [s.prompt for s in specs] == [
        "a cat in red, white",
        "a cat",
        "a small dog in red, white",
        "a small dog",
        "a big dog in red, white",
        "a big dog",
    ]


def test_permutation_limit() -> None:
    forty = "{" + ", ".join(f"w{n}" for n in range(40)) + "}"
    assert len(parse_all(f"a {forty}")) == MAX_JOBS
    err = error("{a,b,c,d,e,f,g} {a,b,c,d,e,f,g}")
    assert "49 jobs" in err.reason and "40" in err.reason
    huge = error("{a,b}" * 64)
    assert "more than 1,000,000" in huge.reason


def test_parse_refuses_several_jobs() -> None:
    with pytest.raises(PromptError) as info:
        parse("a {red, blue} cat --ar {1:1, 2:3}")
    assert info.value.token == "{red, blue}"
    assert "4 jobs" in info.value.reason and "parse_all" in info.value.reason
    assert parse("a {red} cat").prompt == "a red cat"


@pytest.mark.parametrize(("text", "token"), [("a {red, blue cat", "{red,"), ("a red} cat", "red}")])
def test_unbalanced_braces(text: str, token: str) -> None:
    assert error(text).token == token


def test_error_in_one_permutation_names_it() -> None:
    err = error("a cat --ar {1:1, 9:1}")
    assert err.token == "--ar 9:1"


# --------------------------------------------------------------------------- format


def test_format_is_canonical() -> None:
    spec = parse(
        "https://e.com/a.png  a <lora:film:.5> cat::2 hat --c 10 --s 250 --q .5 --r 2 —ar 32:18 "
        "--sampler k_euler_a --no dogs --relax --iw 1 --clip_skip 2 --cfg 7 --steps 30 --model SD15 --tile"
    )
    assert format(spec) == (
        "https://e.com/a.png a cat ::2 hat ::1 --ar 16:9 --no dogs --chaos 10 --stylize 250 --steps 30 "
        "--cfg 7 --sampler Euler a --model sd15 --lora film:0.5 --tile --quality 0.5 --repeat 2 --iw 1 "
        "--clip-skip 2 --relax"
    )
    assert parse(format(spec)) == spec


def test_format_leaves_out_defaults() -> None:
    assert format(parse("a cat --ar 1:1 --s 100 --q 1 --r 1 --c 0")) == "a cat"


def test_format_writes_small_weights_as_decimals() -> None:
    spec = parse("a::0.00001 b")
    assert format(spec) == "a ::0.00001 b ::1"
    assert parse(format(spec)) == spec


# --------------------------------------------------------------------------- the error type


def test_prompt_error_is_a_value_error_with_token() -> None:
    err = error("x --chaos 500")
    assert isinstance(err, ValueError)
    assert (err.token, err.reason) == ("--chaos 500", "chaos must be a whole number from 0 to 100")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.token, copy.reason, str(copy)) == (err.token, err.reason, str(err))


def test_non_string_input_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse(b"a cat")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "named"), [("a cat\x00", "U+0000"), ("a \ud800 cat --ar 3:2", "U+D800")])
def test_a_character_no_database_can_hold_is_refused(text: str, named: str) -> None:
    # NUL: Postgres' text refuses it; a lone surrogate (a JSON escape allows one) has no UTF-8.
    for parser in (parse, parse_all):
        with pytest.raises(PromptError, match=re.escape(f"unusable character ({named})")):
            parser(text)
    assert parse("a cat\tand\na dog").parts == (PromptPart("a cat and a dog"),)
