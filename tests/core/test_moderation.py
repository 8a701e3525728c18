import re

import pytest

from core.moderation import GuildWordList, ModerationError, check_prompt, compile_banned_entry, normalise


@pytest.mark.parametrize(
    "prompt",
    [
        "a red circle on a blue background",
        "a child flying a kite in a park",
        "portrait of a teenager playing guitar, oil painting",
        "nude statue in a museum, marble",  # adult art is a guild policy matter, not the built-in rule
        "a baby elephant",
        "a sexy sports car",
    ],
)
def test_ordinary_prompts_pass(prompt: str) -> None:
    check_prompt(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "naked child",
        "sexy schoolgirl",
        "nude 12 year old",
        "lingerie, 15yo girl",
        "n.u.d.e k.i.d",
        "NUD3 T33N",
        "loli",
        "Shota art",
        "erotic photo of a little girl",
        "topless preteen on a beach",
    ],
)
def test_minors_with_sexual_content_are_refused(prompt: str) -> None:
    with pytest.raises(ModerationError) as err:
        check_prompt(prompt)
    assert err.value.rule == "minors"
    assert "never allowed" in err.value.reason


def test_adult_age_is_not_a_minor() -> None:
    check_prompt("portrait of a 30 year old woman in a bikini")
    with pytest.raises(ModerationError):
        check_prompt("portrait of a 16 year old in a bikini")


def test_guild_banned_words_whole_word_and_case_insensitive() -> None:
    banned = GuildWordList(("Gore", "blood bath"))
    with pytest.raises(ModerationError) as err:
        check_prompt("a GORE scene", banned=banned)
    assert err.value.rule == "banned"
    assert "`gore`" in err.value.reason
    with pytest.raises(ModerationError):
        check_prompt("a blood   bath", banned=banned)
    check_prompt("al gore's house", banned=GuildWordList(("gores",)))
    check_prompt("gorest", banned=banned)


def test_guild_regex_patterns() -> None:
    banned = GuildWordList(("re:\\bcelebrit(y|ies)\\b",))
    with pytest.raises(ModerationError):
        check_prompt("a photo of celebrities", banned=banned)
    check_prompt("a photo of a cat", banned=banned)


def test_invalid_regex_is_reported_when_added_and_skipped_when_checking() -> None:
    with pytest.raises(re.error):
        compile_banned_entry("re:(unclosed")
    check_prompt("anything", banned=GuildWordList(("re:(unclosed",)))


def test_normalise_undoes_common_obfuscation() -> None:
    assert "nude" in normalise("n-u-d-e")
    assert "teen" in normalise("T33N")
    assert normalise("c h i l d") == "child"
    assert normalise("k\u200bi\u00add") == "kid"  # zero-width space, soft hyphen
    assert normalise("nаkеd") == "naked"  # Cyrillic а and е
    assert normalise("ＮＵＤＥ") == "nude"


def test_the_negative_prompt_is_read_too() -> None:
    check_prompt("a child playing in a park", negative="nude, nsfw")  # a careful user
    with pytest.raises(ModerationError):
        check_prompt("a child standing in a room", negative="clothes")
    with pytest.raises(ModerationError):
        check_prompt("a child standing in a room --no clothes")  # the request as typed


def test_a_backtracking_pattern_runs_out_of_time_instead_of_stopping_the_bot() -> None:
    import time

    from core.moderation import backtracks

    # Python's re did not end within 5 s on this (measured); regex gives up after 50 ms.
    banned = GuildWordList(("re:(a|aa)+$",))
    started = time.perf_counter()
    with pytest.raises(ModerationError, match="took too long to check this prompt"):
        check_prompt("a" * 40 + "!", banned=banned)
    assert time.perf_counter() - started < 1.0
    assert backtracks(compile_banned_entry("re:(a+)+$")) and backtracks(compile_banned_entry("re:(\\w+\\s?)+$"))
    assert not backtracks(compile_banned_entry("re:\\bcelebrit(y|ies)\\b"))
    assert not backtracks(compile_banned_entry("pineapple pizza"))
