"""The built-in filter against sexual content involving minors. Always on, for every server.

A prompt is refused when it

* names such content outright (``loli``, ``child porn``, ...);
* refers to a minor (a word for a child in any common form, an age under 18 written in
  any common way: ``12yo``, ``12-year-old``, ``aged 12``, ``twelve year old``, ``7th
  grader``) **near** a sexual term: within :data:`STRONG_WINDOW` words for explicit terms
  (``nude``, ``sex``), :data:`WEAK_WINDOW` for suggestive ones (``sexy``, ``lingerie``);
* refers to a minor and asks, in the negative prompt, to leave out clothing (undressing by
  negation), or is sexual and leaves out adulthood (``--no adult, mature``).

Text is read in every form :func:`core.normalise.reading_forms` gives (look-alike letters,
invisible characters, digit swaps, spaced letters undone). Phrases in which a minor word
means something else (``baby blue``, ``minor chord``, ``kid gloves``) are taken out first,
and proximity rather than co-occurrence keeps a harmless prompt that happens to hold both
kinds of word (a nude statue in a museum that children visit) from being refused.

The figures on a corpus of harmful and harmless prompts written for the purpose are
printed by ``tests/core/test_minors_filter.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.normalise import reading_forms, skeleton, spaced_runs

STRONG_WINDOW = 20
"""Words between a minor and an explicit sexual term within which a prompt is refused."""
WEAK_WINDOW = 8
"""Words between a minor and a suggestive term within which a prompt is refused."""
ADULT_AGE = 18

CP = re.compile(r"(?<![a-z0-9])c+\s?p+(?![a-z0-9])")
"""An abbreviation for abuse material: refused beside any word for a person or anything sexual."""
PERSON = re.compile(r"(?<![a-z0-9])(?:girls?|boys?|kids?|child|children|teens?|models?|pics?|photos?|videos?)(?![a-z0-9])")

ALWAYS_REFUSED = (
    "loli", "lolis", "lolicon", "shota", "shotas", "shotacon", "toddlercon", "child porn", "kiddie porn",
    "kiddy porn", "csam", "pedo", "pedos", "paedo", "pedophile", "paedophile", "pedophilia",
    "paedophilia", "pedophilic", "jailbait", "pthc", "underage sex", "child sex", "child nude",
    "child nudity", "nude child", "naked child", "preteen nude", "nude preteen", "kid porn", "teen porn",
)
MINOR_TERMS = (
    "child", "children", "childs", "kid", "kids", "kiddo", "kiddie", "kiddies", "minor", "minors", "underage",
    "under age", "preteen", "preteens", "pre teen", "tween", "tweens", "teen", "teens", "teenager",
    "teenagers", "teenage", "teenaged", "adolescent", "adolescents", "toddler", "toddlers", "infant",
    "infants", "baby", "babies", "newborn", "little girl", "little girls", "little boy", "little boys",
    "young girl", "young girls", "young boy", "young boys", "small girl", "small boy", "tiny girl",
    "tiny boy", "schoolgirl", "schoolgirls", "school girl", "schoolboy", "schoolboys", "school boy",
    "schoolkid", "schoolkids", "schoolchild", "schoolchildren", "elementary school", "primary school",
    "middle school", "middle schooler", "junior high", "grade school", "grade schooler", "kindergarten",
    "kindergartner", "kindergartener", "juvenile", "juveniles", "youngster", "youngsters", "girl child",
    "boy child", "daughter", "stepdaughter", "son", "stepson", "niece", "nephew", "prepubescent",
    "pubescent", "prepubertal", "lolita", "underaged", "not yet 18", "ninas", "ninos", "nina pequena",
    "nino pequeno", "enfant", "enfants", "madchen", "bambina", "bambino", "chibi child",
    "little one", "little ones", "young teen", "young teens", "boy scout", "girl scout", "cub scout",
    "young student", "young students", "schoolchildren", "lil girl", "lil boy", "smol girl", "preschooler",
    "preschoolers", "preschool", "pre schooler", "teenie", "teenies", "teeny bopper", "kiddy", "childlike",
    "child like", "child sized", "child body", "little sister", "little brother", "baby sister",
)
EXPLICIT_TERMS = (
    "nude", "nudes", "naked", "nudity", "nudist", "topless", "bottomless", "undressed", "undress",
    "undressing", "unclothed", "disrobed", "disrobing", "no clothes", "without clothes", "no clothing",
    "without clothing", "wearing nothing", "not wearing anything", "in the nude", "fully exposed",
    "sex", "sexual", "sexually", "sexualized", "sexualised", "porn", "porno", "pornographic", "nsfw",
    "xxx", "rule 34", "r34", "hentai", "ecchi", "erotic", "erotica", "lewd", "obscene", "intercourse",
    "genital", "genitals", "genitalia", "penis", "vagina", "vulva", "pussy", "dick", "clit", "anus",
    "orgasm", "masturbate", "masturbating", "masturbation", "cum", "cumming", "semen", "blowjob",
    "handjob", "fellatio", "molest", "molested", "molesting", "rape", "raped", "raping", "onlyfans",
    "fetish", "bdsm", "bondage", "spread legs", "legs spread", "breasts", "boobs", "tits", "nipple",
    "nipples", "areola", "crotch", "butt naked", "bare breasts", "bare bottom", "exposed breasts",
    "exposed body", "striptease", "stripper", "stripping", "strip naked", "having sex", "making love",
    "aroused", "arousal", "horny", "kinky", "explicit", "upskirt", "downblouse", "camel toe", "nood",
    "noods", "nekkid", "nakey", "nakid", "nakedness", "secks", "seggs", "pron", "breast", "sexting",
    "erotically", "nude beach", "nudism", "skinny dipping", "sex toy", "sex toys",
)
SUGGESTIVE_TERMS = (
    "sexy", "seductive", "seducing", "seduce", "provocative", "sensual", "suggestive", "lingerie",
    "panties", "panty", "underwear", "bra", "bras", "thong", "thongs", "g string", "bikini", "bikinis",
    "skimpy", "revealing", "see through", "sheer clothing", "wet clothes", "wet shirt", "in bed with",
    "bedroom eyes", "pinup", "pin up", "boudoir", "cleavage", "busty", "curvy body", "flirty",
    "flirting", "bare skin", "bare body", "bare chested", "bare chest", "strip", "stripped", "body oil",
    "oiled body", "kissing an adult", "on her knees", "lap dance", "pole dance", "pole dancing",
    "harem", "playboy", "hot body", "voluptuous", "slutty", "slut", "whore", "escort", "sxy", "seductively",
    "provocatively", "sensually", "undies", "lingere", "wet t shirt", "micro bikini", "tight clothes",
    "posing suggestively", "come hither", "bedroom pose",
)
CLOTHING_TERMS = (
    "clothes", "clothing", "clothed", "any clothes", "garment", "garments", "apparel", "attire",
    "underwear", "bra", "panties", "swimsuit", "swimwear", "bathing suit", "bikini", "covering",
    "covered", "censored", "censor", "censorship", "censor bar", "modest", "modesty", "towel",
)
"""In a negative prompt beside a minor: asking for the clothing to be left out. Single
garments (``--no hat``, ``--no dress``) are not on the list: they swap one for another."""
ADULT_TERMS = (
    "adult", "adults", "mature", "grown", "grown up", "grownup", "over 18", "18 plus", "of age",
    "legal age", "milf", "aged up", "adult body", "adult proportions",
)
"""In a negative prompt beside sexual content: asking for the person not to be an adult."""
NOT_ADULT_PHRASES = ("mature content", "mature themes", "adult content", "adult themes", "adult only", "adults only")
NOT_MINOR_PHRASES = (
    "baby blue", "baby pink", "baby oil", "baby shower", "baby powder", "baby face", "baby's breath",
    "babys breath", "baby breath", "baby bump", "baby grand", "baby back", "baby carrot", "baby carrots",
    "baby spinach", "baby corn", "baby boomer", "baby boomers", "baby yoda", "baby groot", "baby shark",
    "baby steps", "baby tooth", "baby teeth", "baby monitor", "kid gloves", "kid leather", "minor key",
    "minor chord", "minor chords", "minor scale", "minor detail", "minor details", "minor injury",
    "minor injuries", "minor planet", "minor arcana", "minor league", "minor god", "minor gods",
    "minor character", "minor characters", "in a minor", "in b minor", "in c minor", "in d minor",
    "in e minor", "in f minor", "in g minor", "son of god", "son goku",
    "teen titans", "teen titan", "teenage mutant ninja turtles", "teenage mutant", "daughter of the sea",
    "son of the sun", "son of man", "the son of", "sons of anarchy", "child of light", "children of men",
    "children of dune", "child's play", "childs play", "inner child", "star child", "starchild",
    "child of the stars", "wonder child",
)
NOT_SEXUAL_PHRASES = (
    "cum laude", "magna cum laude", "summa cum laude", "comic strip", "comic strips", "strip mall",
    "landing strip", "bacon strip", "bacon strips", "strip of", "strip club sign", "chicken breast",
    "chicken breasts", "turkey breast", "breast cancer", "breastfeeding", "breast feeding", "breast pump",
    "pussy cat", "pussycat", "pussy willow", "sex pistols", "bra ket", "nude color", "nude colour",
    "nude lipstick", "nude palette", "nude heels", "nude tone", "nude tones", "nude beige", "nude pink",
    "spread out", "spread of", "spread wings", "spread its wings", "spread their wings", "spread across",
    "spread the", "spreading", "oiled wood", "top hat", "laptop", "sex education", "sex ed",
    "breast stroke", "breaststroke", "breast pocket",
)
GARMENTS = (
    "dress", "shirt", "t shirt", "top", "pants", "trousers", "shorts", "skirt", "jeans", "jacket",
    "sweater", "coat", "hoodie", "leggings", "tights", "socks", "blouse", "vest", "pajamas", "onesie",
)
"""Single garments: two or more left out beside a minor is undressing by negation too."""
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
}
_NUMBER_WORDS.update(_ORDINALS)
_NUM = r"(\d{1,3}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_AGE_PATTERNS = tuple(
    re.compile(p)
    for p in (
        rf"\b{_NUM}\s*(?:years?|yrs?|yr|y)\s*(?:old|o)\b",
        rf"\b{_NUM}\s*(?:yo|yos|yob)\b",
        rf"\b{_NUM}\s*years?\s+of\s+age\b",
        rf"\baged?\s+(?:of\s+|is\s+|about\s+|around\s+|only\s+|just\s+)?{_NUM}\b",
        rf"\b{_NUM}\s*(?:st|nd|rd|th)?\s*grader?s?\b",
        rf"\b{_NUM}\s*(?:st|nd|rd|th)?\s+birthday\b",
        rf"\b(?:girl|boy|she|he|who|kid|child|daughter|son)\s+(?:is|was|turned|turning|just turned)\s+{_NUM}\b(?!\s*(?:feet|ft|inches|cm|m|kg|lbs|pounds|years\s+ago))",
        rf"\blooks?\s+(?:like\s+)?(?:she\s+is\s+|he\s+is\s+|shes\s+|hes\s+|about\s+|around\s+)?{_NUM}\b(?!\s*(?:feet|ft|cm|kg))",
        rf"\bgrade\s+{_NUM}\b",
        rf"\bunder\s+(?:the\s+age\s+of\s+)?{_NUM}\b",
        rf"\bbelow\s+{_NUM}\b",
        r"\bu\s?(1[0-7])\b",
        # "a girl, 14": a bare number after a word for a person (a count comes before it).
        rf"\b(?:girl|boy|daughter|son|sister|brother|kid|child)s?\s+{_NUM}\b(?!\s*(?:years?|yrs?|yr|y|st|nd|rd|th|am|pm|of|x|k|mm|cm|ft|m)\b)",
    )
)
_GRADE = re.compile(r"grade")


class MinorsRefusal(Exception):
    """The filter's verdict: ``reason`` is what the user reads."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Hit:
    term: str
    word: int  # index of the first word of the match


def _alternative(term: str) -> str:
    # Each letter may repeat ("naaaked"); words of a phrase may be run together ("schoolgirl").
    return r"\s?".join("".join(re.escape(c) + "+" for c in word) for word in term.split())


_COMPILED: dict[str, re.Pattern[str]] = {}


def _compiled(name: str, terms: Sequence[str]) -> re.Pattern[str]:
    if name not in _COMPILED:
        ordered = sorted(set(terms), key=len, reverse=True)
        _COMPILED[name] = re.compile(
            r"(?<![a-z0-9])(?:" + "|".join(_alternative(t) for t in ordered) + r")(?![a-z0-9])"
        )
    return _COMPILED[name]


def _hits(text: str, name: str, terms: Sequence[str]) -> list[_Hit]:
    return [_Hit(m.group(0), text.count(" ", 0, m.start())) for m in _compiled(name, terms).finditer(text)]


_TEEN = re.compile(r"t+e+e+n")


def _only_teen_words(hits: Sequence[_Hit]) -> bool:
    return all(_TEEN.match(h.term) for h in hits)


def _without(text: str, phrases: Iterable[str]) -> str:
    for phrase in phrases:
        text = re.sub(r"(?<![a-z0-9])" + re.escape(phrase) + r"(?![a-z0-9])", lambda m: "x " * len(m.group(0).split()), text)
    return re.sub(r"\s+", " ", text).strip()


def _ages(text: str) -> list[_Hit]:
    found: list[_Hit] = []
    for pattern in _AGE_PATTERNS:
        for match in pattern.finditer(text):
            raw = match.group(1)
            value = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
            if _GRADE.search(match.group(0)) and "birthday" not in match.group(0):
                value += 5  # first grade at about six
            elif match.group(0).startswith(("under", "below")):
                value -= 1
            found.append(_Hit(f"age {value}", text.count(" ", 0, match.start())))
    return found


def _near(a: Sequence[_Hit], b: Sequence[_Hit], window: int) -> tuple[_Hit, _Hit] | None:
    for x in a:
        for y in b:
            if abs(x.word - y.word) <= window:
                return x, y
    return None


def _split_negative(text: str) -> tuple[str, str]:
    """The positive text and the ``--no`` parts of a prompt as typed (flags up to the next flag)."""
    negative: list[str] = []

    def take(match: re.Match[str]) -> str:
        negative.append(match.group(1))
        return " "

    positive = re.sub(r"(?:^|\s)(?:--|[—–])\s?no\s+(.*?)(?=\s(?:--|[—–])\s?[a-z]|$)", take, text, flags=re.I | re.S)
    # A part of a multi-prompt with a negative weight ("clothes::-1") is a negative prompt too.
    positive = re.sub(r"([^:]*)::\s*-\s*[0-9.]+", take, positive)
    return positive, " ".join(negative)


_EVERY_TERM = re.compile(
    "|".join(
        sorted(
            {re.escape(t.replace(" ", "")) for t in (*ALWAYS_REFUSED, *MINOR_TERMS, *EXPLICIT_TERMS, *SUGGESTIVE_TERMS)},
            key=len,
            reverse=True,
        )
    )
)


def _forms(text: str) -> tuple[str, ...]:
    """:func:`reading_forms`, and one more for words spelled with spaced letters: "a k i d"
    joins up as "akid", so the terms found inside such runs are set apart there."""
    forms = reading_forms(text)
    runs = spaced_runs(skeleton(text))
    if not runs:
        return forms
    segmented = " ".join(_EVERY_TERM.sub(lambda m: f" {m.group(0)} ", run) for run in runs)
    return (*forms, re.sub(r"\s+", " ", segmented).strip())


REFUSAL = "This prompt combines minors with sexual content, which is never allowed."
REFUSAL_NAMED = "This prompt asks for sexual content involving minors, which is never allowed."


def check_minors(prompt: str, negative: str | None = None) -> None:
    """Refuse ``prompt`` (with ``negative``, its ``--no`` text) if it sexualises minors.

    Args:
        prompt: the prompt as typed, or the parsed positive prompt.
        negative: the negative prompt; None to read the ``--no`` parts out of ``prompt``.

    Raises:
        MinorsRefusal: with the reason to show.
    """
    if negative is None:
        prompt, negative = _split_negative(prompt)
    positive_forms = _forms(prompt)
    negative_forms = _forms(negative) if negative.strip() else ()

    for text in positive_forms:
        if _hits(text, "always", ALWAYS_REFUSED):
            raise MinorsRefusal(REFUSAL_NAMED)
        if CP.search(text) and (PERSON.search(text) or _hits(text, "explicit", EXPLICIT_TERMS)):
            raise MinorsRefusal(REFUSAL_NAMED)

    minors: list[_Hit] = []
    explicit: list[_Hit] = []
    suggestive: list[_Hit] = []
    adult_age = False
    for text in positive_forms:
        ages = _ages(text)
        adult_age = adult_age or any(int(h.term.split()[1]) >= ADULT_AGE for h in ages)
        minors_here = [h for h in ages if 0 < int(h.term.split()[1]) < ADULT_AGE]
        minors_here += _hits(_without(text, NOT_MINOR_PHRASES), "minor", MINOR_TERMS)
        sexual_text = _without(text, NOT_SEXUAL_PHRASES)
        explicit_here = _hits(sexual_text, "explicit", EXPLICIT_TERMS)
        suggestive_here = _hits(sexual_text, "suggestive", SUGGESTIVE_TERMS)
        minors += minors_here
        explicit += explicit_here
        suggestive += suggestive_here
        near = _near(minors_here, explicit_here, STRONG_WINDOW) or _near(minors_here, suggestive_here, WEAK_WINDOW)
        # "a 19 year old teen": a stated adult age outweighs the word teen alone.
        if near and not (adult_age and _only_teen_words(minors_here)):
            raise MinorsRefusal(REFUSAL)

    if not negative_forms:
        return
    minor_seen = bool(minors) and not (adult_age and _only_teen_words(minors))
    for text in negative_forms:
        if minor_seen and (
            _hits(text, "clothing", CLOTHING_TERMS) or len({h.term for h in _hits(text, "garments", GARMENTS)}) >= 2
        ):
            raise MinorsRefusal(REFUSAL)
        if (explicit or suggestive) and _hits(_without(text, NOT_ADULT_PHRASES), "adult", ADULT_TERMS):
            raise MinorsRefusal(REFUSAL)


def mentions_minor(prompt: str) -> bool:
    """Whether ``prompt`` refers to a minor at all (a word for a child, an age under 18).

    The worker asks this of a prompt whose input image the NSFW detector flagged: with an
    explicit image, a minor in the prompt is enough.
    """
    positive, _ = _split_negative(prompt)
    for text in _forms(positive):
        ages = _ages(text)
        adult_age = any(int(h.term.split()[1]) >= ADULT_AGE for h in ages)
        found = [h for h in ages if 0 < int(h.term.split()[1]) < ADULT_AGE]
        found += _hits(_without(text, NOT_MINOR_PHRASES), "minor", MINOR_TERMS)
        if found and not (adult_age and _only_teen_words(found)):
            return True
    return False
