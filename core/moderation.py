"""Prompt moderation that runs before anything is charged or queued.

Two layers:

* the built-in filter against sexual content involving minors (:mod:`core.minors`), always
  on; it reads the positive and the negative prompt, in every disguised form
  (:mod:`core.normalise`);
* per-guild banned words (whole words, case-insensitive, matched on the normalised text)
  and ``re:`` regular expressions (matched on the text as typed).

Patterns run on the ``regex`` package with a time limit (:data:`PATTERN_TIMEOUT_S`): an
admin's pattern that backtracks (``(a+)+$`` against forty ``a`` and a ``!``: Python's ``re``
took 1.1 s at 24, doubling with each more, so about 20 hours) would otherwise stop the bot for
every server. A pattern that runs out of time
refuses the prompt, saying so; one that backtracks on the probes of :func:`backtracks` is
refused when an admin adds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import regex

from core.minors import MinorsRefusal, check_minors
from core.normalise import normalise

__all__ = ["GuildWordList", "ModerationError", "backtracks", "check_prompt", "compile_banned_entry", "normalise"]

PATTERN_TIMEOUT_S = 0.05
"""The most one banned pattern may take on one prompt (a plain one takes microseconds)."""
_PROBES = tuple(c * 1000 + "!" for c in ("a", "A", "0", " ", "ab", "a ", ".", "-", "x\n"))
"""Texts that make a backtracking pattern run long (repeats of one or two characters, then a
character that fails the match)."""


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

    def compiled(self) -> list[tuple[str, Any]]:
        """(entry, pattern) pairs; a bad ``re:`` pattern is skipped (it is refused when it is added)."""
        out: list[tuple[str, Any]] = []
        for entry in self.entries:
            try:
                out.append((entry, compile_banned_entry(entry)))
            except re.error:
                continue
        return out


def compile_banned_entry(entry: str) -> Any:
    """Compile one banned-word entry: ``re:PATTERN`` as a regex, anything else as whole words
    (a ``regex`` pattern: search it with ``timeout=PATTERN_TIMEOUT_S``).

    Raises:
        re.error: for an invalid ``re:`` pattern (callers show it to the admin adding it).
    """
    if entry.startswith("re:"):
        re.compile(entry[3:], re.IGNORECASE)  # Python's syntax and error messages, as admins read them
        try:
            return regex.compile(entry[3:], regex.IGNORECASE | regex.VERSION0)
        except regex.error as exc:  # pragma: no cover - what re compiles, regex's VERSION0 does
            raise re.error(str(exc)) from None
    words = normalise(entry)
    return regex.compile(r"(?<![a-z0-9])" + r"\s+".join(map(re.escape, words.split())) + r"(?![a-z0-9])")


def backtracks(pattern: Any) -> bool:
    """Whether a compiled pattern runs out of time on one of the probe texts."""
    try:
        for probe in _PROBES:
            pattern.search(probe, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        return True
    return False


def check_prompt(prompt: str, *, negative: str | None = None, banned: GuildWordList | None = None) -> None:
    """Refuse a prompt that breaks the built-in rules or the guild's banned words.

    Args:
        prompt: the positive prompt, or the whole request as typed (flags included).
        negative: the negative prompt; None when ``prompt`` is the request as typed (its
            ``--no`` parts are then read out of it).
        banned: the guild's banned words and patterns.

    Raises:
        ModerationError: with a reason to show the user; nothing has been charged.
    """
    try:
        check_minors(prompt, negative)
    except MinorsRefusal as refusal:
        raise ModerationError(refusal.reason, rule="minors") from None
    if banned:
        text = normalise(prompt)
        for entry, pattern in banned.compiled():
            target = prompt if entry.startswith("re:") else text
            try:
                found = pattern.search(target, timeout=PATTERN_TIMEOUT_S)
            except TimeoutError:
                raise ModerationError(
                    f"This server's banned pattern `{entry}` took too long to check this prompt, so it cannot "
                    "be accepted; an admin can simplify the pattern.", rule="banned",
                ) from None
            if found:
                shown = entry if entry.startswith("re:") else entry.lower()
                raise ModerationError(f"This server does not allow the word or pattern `{shown}`.", rule="banned")
