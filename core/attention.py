"""A1111 attention syntax in prompt text: ``(word:1.3)``, ``((word))``, ``[word]``.

The text is kept verbatim for the worker to apply (:mod:`gpu_worker.prompting`); the
grammar only checks it here: balanced brackets, a sane nesting depth and weights.
"""

from __future__ import annotations

import re

from core.errors import PromptError

MAX_ATTENTION_DEPTH = 8
ATTENTION_WEIGHT_RANGE = (0.0, 3.0)
_ATTENTION_WEIGHT = re.compile(r":\s*([+-]?[.0-9]+)\s*$")


_CLOSING = {")": "(", "]": "["}


def check_attention(text: str) -> None:
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
                raise PromptError(word_at(text, i), f"brackets nest more than {MAX_ATTENTION_DEPTH} deep")
        elif ch in _CLOSING:
            if not stack or stack[-1][0] != _CLOSING[ch]:
                raise PromptError(
                    word_at(text, i), f"unbalanced '{ch}': there is no '{_CLOSING[ch]}' before it"
                )
            _, start = stack.pop()
            if ch == ")":
                _check_weight(text, start, i)
        i += 1
    if stack:
        ch, start = stack[-1]
        closer = ")" if ch == "(" else "]"
        raise PromptError(word_at(text, start), f"unbalanced '{ch}': every '{ch}' needs a closing '{closer}'")


def _check_weight(text: str, start: int, end: int) -> None:
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
        raise PromptError(token, f"attention weights must be between {low:g} and {high:g}")


def word_at(text: str, index: int) -> str:
    """The whitespace-delimited word around ``index``, for naming a token in an error."""
    start = index
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = index
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[start:end]
    return word if len(word) <= 60 else word[:60] + "…"
