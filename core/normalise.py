"""Text as moderation reads it: one spelling for the many ways a word can be disguised.

:func:`skeleton` undoes what changes how a word is written but not how it reads:

* compatibility forms (NFKC: full-width letters, ligatures, mathematical alphabets);
* invisible characters: zero-width spaces and joiners, soft hyphens, word joiners,
  direction marks, variation selectors;
* look-alike letters from other scripts (Cyrillic ``а``, Greek ``ο``, ...), mapped to the
  Latin letter they imitate with the Unicode confusables table (the maintained
  ``confusable_homoglyphs`` package); what that leaves (small capitals ``ᴋ``, other
  scripts) is transliterated to ASCII (``anyascii``);
* accents, and upper case.

:func:`reading_forms` then gives the texts a filter should match against: the skeleton with
word separators made spaces (digits kept, for ages), the same with digit and symbol swaps
undone inside words (``n4k3d``), and the same with letters spaced or dotted apart joined
again (``c h i l d``, ``k.i.d``).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f]"
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"}
)
_LEET_CHARS = "0134578 9@$!|+€".replace(" ", "")
_WORD_WITH_SWAPS = re.compile(rf"[a-z{re.escape(_LEET_CHARS)}]*[a-z][a-z{re.escape(_LEET_CHARS)}]*")
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])(?:[a-z][ ]{1,3}){2,}[a-z](?![a-z0-9])")
_DOTTED_LETTERS = re.compile(r"(?<![a-z0-9])(?:[a-z][.\-_*·•/\\~]{1,3}){2,}[a-z](?![a-z0-9])")


@functools.lru_cache(maxsize=8192)
def _latin_for(char: str) -> str:
    """The ASCII letter or digit ``char`` imitates, or ``char`` itself."""
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"])
    if found:
        for glyph in found[0]["homoglyphs"]:
            candidate = glyph["c"]
            if len(candidate) == 1 and candidate.isascii() and candidate.isalnum():
                return candidate
    return char


def skeleton(text: str) -> str:
    """``text`` in compatibility form, without invisible characters, look-alikes or accents, lower case."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    text = "".join(c if c.isascii() else _latin_for(c) for c in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    if not text.isascii():
        from anyascii import anyascii

        text = anyascii(text)
    return text.lower()


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _undo_swaps(text: str) -> str:
    # Only inside words that have a letter: "12 year old" keeps its digits, "k1d" reads "kid".
    return _WORD_WITH_SWAPS.sub(lambda m: m.group(0).translate(_LEET), text)


def spaced_runs(text: str) -> list[str]:
    """The words spelled with letters set apart in ``text`` (a skeleton), each joined up."""
    text = _DOTTED_LETTERS.sub(lambda m: re.sub(r"[^a-z]", "", m.group(0)), text)
    return [m.group(0).replace(" ", "") for m in _SPACED_LETTERS.finditer(text)]


def _join_spaced(text: str) -> str:
    # Dotted runs first, so that "n.u.d.e k.i.d" stays two words.
    text = _DOTTED_LETTERS.sub(lambda m: re.sub(r"[^a-z]", "", m.group(0)), text)
    return _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)


def reading_forms(text: str) -> tuple[str, ...]:
    """The forms of ``text`` a filter matches (module docstring), each words separated by one space.

    The first keeps digits as typed (ages are read from it).
    """
    base = skeleton(text)
    forms = [_words(base), _words(_undo_swaps(base)), _words(_join_spaced(_undo_swaps(base)))]
    return tuple(dict.fromkeys(forms))


def normalise(text: str) -> str:
    """One form for whole-word matching of banned words: skeleton, swaps undone, spaced letters joined."""
    return reading_forms(text)[-1]
