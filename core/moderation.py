"""Prompt moderation that runs before anything is charged or queued.

Two layers:

* a built-in filter, always on, that refuses any prompt combining a reference to minors
  with sexual content (and a few terms that are unambiguous on their own);
* per-guild banned words (whole words, case-insensitive) and ``re:`` regular expressions.

Text is normalised first (case, accents, common digit-for-letter swaps, separators inside
words such as ``n.u.d.e``) so trivial obfuscation does not slip through. Callers pass the
positive prompt only: negative prompts are not scanned, since "--no nude" is what a careful
user writes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Terms that refer to minors. Matched as whole words after normalisation.
_MINOR_TERMS = (
    "child", "children", "kid", "kids", "minor", "minors", "underage", "under age", "preteen",
    "pre teen", "teen", "teens", "teenager", "teenage", "toddler", "infant", "baby", "babies",
    "little girl", "little boy", "young girl", "young boy", "schoolgirl", "school girl", "schoolboy",
    "school boy", "elementary school", "middle school", "grade schooler", "juvenile", "youngster",
    "girl child", "boy child", "daughter", "son", "niece", "nephew", "jailbait", "prepubescent",
)
# Terms that make content sexual.
_SEXUAL_TERMS = (
    "nude", "nudes", "naked", "nudity", "sex", "sexy", "sexual", "sexualized", "porn", "porno",
    "pornographic", "nsfw", "erotic", "erotica", "lingerie", "topless", "bottomless", "undressed",
    "undressing", "explicit", "hentai", "ecchi", "breasts", "boobs", "nipples", "genitals", "genitalia",
    "penis", "vagina", "pussy", "cock", "orgasm", "aroused", "seductive", "provocative", "bikini",
    "panties", "underwear", "fetish", "bdsm", "intercourse", "masturbating", "masturbation", "lewd",
    "strip", "stripping", "stripper", "cum", "onlyfans", "spread legs", "bare chested", "no clothes",
    "without clothes", "in bed with",
)
# Terms refused on their own: they only ever name sexual content involving minors.
_ALWAYS_REFUSED = ("loli", "lolicon", "shota", "shotacon", "cp", "child porn", "pedo", "pedophile", "csam")

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_AGE_RE = re.compile(r"\b(\d{1,2})\s*(?:yo|y\s*o|yrs?|years?\s*old|year\s*old)\b")


class ModerationError(ValueError):
    """A prompt refused by moderation. ``reason`` is safe to show the user."""

    def __init__(self, reason: str, *, rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule


@dataclass(frozen=True, slots=True)
class GuildWordList:
    """A guild's banned words (whole words) and ``re:`` patterns, as the admin typed them."""

    entries: tuple[str, ...] = ()

    def compiled(self) -> list[tuple[str, re.Pattern[str]]]:
        """(entry, regex) pairs; a bad ``re:`` pattern is skipped (it is refused when it is added)."""
        out: list[tuple[str, re.Pattern[str]]] = []
        for entry in self.entries:
            try:
                out.append((entry, compile_banned_entry(entry)))
            except re.error:
                continue
        return out


def compile_banned_entry(entry: str) -> re.Pattern[str]:
    """Compile one banned-word entry: ``re:PATTERN`` as a regex, anything else as whole words.

    Raises:
        re.error: for an invalid ``re:`` pattern (callers show it to the admin adding it).
    """
    if entry.startswith("re:"):
        return re.compile(entry[3:], re.IGNORECASE)
    words = normalise(entry)
    return re.compile(r"(?<![a-z0-9])" + r"\s+".join(map(re.escape, words.split())) + r"(?![a-z0-9])")


def normalise(text: str) -> str:
    """Lower-case, strip accents, undo digit-for-letter swaps, join dotted/spaced-out letters."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    # Keep ages readable before the digit swaps turn "12" into "iz".
    ages = " ".join(f"age{m.group(1)}" for m in _AGE_RE.finditer(text))
    text = text.translate(_LEET)
    # "n.u.d.e", "n-u-d-e", "n u d e" -> "nude": runs of single letters split by separators.
    # Punctuation separators first so "n.u.d.e k.i.d" stays two words.
    text = re.sub(r"\b(?:[a-z][.\-_*]){2,}[a-z]\b", lambda m: re.sub(r"[.\-_*]", "", m.group(0)), text)
    text = re.sub(r"\b(?:[a-z] ){3,}[a-z]\b", lambda m: m.group(0).replace(" ", ""), text)
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    return f"{text} {ages}".strip()


def _has_any(text: str, terms: Iterable[str]) -> str | None:
    for term in terms:
        if re.search(r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])", text):
            return term
    return None


def check_prompt(prompt: str, *, banned: GuildWordList | None = None) -> None:
    """Refuse a prompt that breaks the built-in rules or the guild's banned words.

    Args:
        prompt: the positive prompt as the user typed it (flags may be included).
        banned: the guild's banned words and patterns.

    Raises:
        ModerationError: with a reason to show the user; nothing has been charged.
    """
    text = normalise(prompt)
    minor_age = any(int(a) < 18 for a in re.findall(r"\bage(\d{1,2})\b", text))
    if _has_any(text, _ALWAYS_REFUSED):
        raise ModerationError(
            "This prompt asks for sexual content involving minors, which is never allowed.", rule="minors"
        )
    minor = _has_any(text, _MINOR_TERMS) or ("age under 18" if minor_age else None)
    sexual = _has_any(text, _SEXUAL_TERMS)
    if minor and sexual:
        raise ModerationError(
            "This prompt combines minors with sexual content, which is never allowed.", rule="minors"
        )
    if banned:
        for entry, pattern in banned.compiled():
            target = prompt if entry.startswith("re:") else text
            if pattern.search(target):
                shown = entry if entry.startswith("re:") else entry.lower()
                raise ModerationError(f"This server does not allow the word or pattern `{shown}`.", rule="banned")
