"""Prompt moderation that runs before anything is charged or queued.

Two layers:

* the built-in filter against sexual content involving minors (:mod:`core.minors`), always
  on; it reads the positive and the negative prompt, in every disguised form
  (:mod:`core.normalise`);
* per-guild banned words (whole words, case-insensitive, matched on the normalised text)
  and ``re:`` regular expressions (matched on the text as typed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.minors import MinorsRefusal, check_minors
from core.normalise import normalise

__all__ = ["GuildWordList", "ModerationError", "check_prompt", "compile_banned_entry", "normalise"]


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
            if pattern.search(target):
                shown = entry if entry.startswith("re:") else entry.lower()
                raise ModerationError(f"This server does not allow the word or pattern `{shown}`.", rule="banned")
