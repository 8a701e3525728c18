"""Permutation prompts: ``a {red, blue} car`` is two jobs, ``a car --ar {1:1, 16:9}`` too.

Groups nest (up to :data:`MAX_BRACE_DEPTH` deep) and may stand anywhere, flags included;
``\\,`` is a literal comma inside braces. :func:`count` sizes the expansion before
:func:`expand` builds it, so a prompt that would expand to millions of jobs costs nothing.
"""

from __future__ import annotations

from core.attention import word_at
from core.errors import PromptError

MAX_BRACE_DEPTH = 8


# A parsed permutation prompt: literal text and groups; a group is a list of alternatives.
_Seq = list["str | list[_Seq]"]


def read_braces(text: str) -> tuple[_Seq, str]:
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
                raise PromptError(word_at(text, i), f"permutations nest more than {MAX_BRACE_DEPTH} deep")
            flush()
            stack.append((current, [], i))
            current = []
        elif ch == "," and stack:
            flush()
            stack[-1][1].append(current)
            current = []
        elif ch == "}":
            if not stack:
                raise PromptError(word_at(text, i), "unbalanced '}': there is no '{' before it")
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
        raise PromptError(word_at(text, start), "unbalanced '{': every '{' needs a closing '}'")
    flush()
    return root, first_group


def count(seq: _Seq) -> int:
    total = 1
    for item in seq:
        if not isinstance(item, str):
            total *= sum(count(alternative) for alternative in item)
    return total


def expand(seq: _Seq) -> list[str]:
    # Only called once count(seq) is known to be small, so every partial list is small too.
    results = [""]
    for item in seq:
        if isinstance(item, str):
            results = [r + item for r in results]
        else:
            options = [option.strip() for alternative in item for option in expand(alternative)]
            results = [r + option for r in results for option in options]
    return results


def count_words(count: int) -> str:
    return f"{count:,}" if count <= 1_000_000 else "more than 1,000,000"
