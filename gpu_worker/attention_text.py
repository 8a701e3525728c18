"""A1111 attention syntax read into weighted pieces of text: ``(word)`` x1.1, ``((word))``
x1.21, ``[word]`` /1.1, ``(word:1.3)`` 1.3, ``\\(`` literal, ``BREAK`` a new window.

:mod:`gpu_worker.prompting` tokenizes the pieces and applies the weights to the embeddings;
families whose encoders it cannot weight get the text back without the syntax
(:func:`strip_attention`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROUND_MULTIPLIER = 1.1
"""Weight multiplier of one pair of round brackets."""
SQUARE_MULTIPLIER = 1 / 1.1
"""Weight multiplier of one pair of square brackets."""

# One alternative per lexical element of A1111's attention grammar; group 1 is the
# number of a ``:1.3)`` closer.
_ATTENTION_TOKEN = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\\] | \\\\ | \\ |
    \( | \[ |
    :\s*([+-]?[.\d]+)\s*\) |
    \) | \] |
    [^\\()\[\]:]+ |
    :
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)
_BREAK_MARK = "\x00BREAK\x00"


@dataclass(frozen=True, slots=True)
class WeightedText:
    """A run of prompt text and the attention weight of every token in it."""

    text: str
    weight: float


def parse_attention(text: str) -> list[WeightedText]:
    """Split A1111 attention syntax into runs of text with their weights.

    Unbalanced brackets are closed at the end of the text (so ``(word`` is ``word`` at
    1.1), as A1111 does. Adjacent runs with the same weight are merged.

    Args:
        text: one prompt (one multi-prompt part).

    Returns:
        The runs in order; ``BREAK`` appears as a run of its own with weight -1.

    Example:
        ``parse_attention("a (red:1.5) [ball]")`` gives
        ``[("a ", 1.0), ("red", 1.5), (" ", 1.0), ("ball", 0.909...)]``.
    """
    runs: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            if run[1] != -1:
                run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        piece, number = match.group(0), match.group(1)
        if piece.startswith("\\"):
            runs.append([piece[1:] if len(piece) > 1 else piece, 1.0])
        elif piece == "(":
            round_open.append(len(runs))
        elif piece == "[":
            square_open.append(len(runs))
        elif number is not None and round_open:
            try:
                factor = float(number)
            except ValueError:  # e.g. "(word:1.2.3)": A1111 would crash; keep the text as is
                runs.append([piece, 1.0])
                continue
            scale_from(round_open.pop(), factor)
        elif piece == ")" and round_open:
            scale_from(round_open.pop(), ROUND_MULTIPLIER)
        elif piece == "]" and square_open:
            scale_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for i, chunk in enumerate(_BREAK.split(piece)):
                if i > 0:
                    runs.append([_BREAK_MARK, -1])
                runs.append([chunk, 1.0])
    for start in round_open:
        scale_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        scale_from(start, SQUARE_MULTIPLIER)

    merged: list[list[Any]] = []
    for run in runs:
        if run[0] == "" and run[1] != -1:
            continue
        if merged and merged[-1][1] == run[1] and run[1] != -1:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    if not merged:
        merged = [["", 1.0]]
    return [WeightedText("BREAK" if t == _BREAK_MARK else t, float(w)) for t, w in merged]


def strip_attention(text: str) -> str:
    """The prompt text without attention syntax, for models this module cannot weight."""
    return "".join(r.text for r in parse_attention(text) if r.weight != -1)
