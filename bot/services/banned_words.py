"""A server's banned words and patterns: checking an entry, adding and removing it.

Entries are whole words or phrases (any case) or ``re:PATTERN`` regular expressions; the
list is read-modify-written under the server's row lock, and each change is recorded like
every admin action (:mod:`bot.services.admin`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.admin import AdminError, locked_guild, record_action
from core.moderation import backtracks, compile_banned_entry, normalise
from db.repositories import update_guild_policy

MAX_BANNED_ENTRIES = 500
MAX_ENTRY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class WordListChange:
    """A server's banned words after an add or remove."""

    entries: tuple[str, ...]
    changed: bool
    """False when the entry was already on the list (add)."""


def check_banned_entry(entry: str) -> str:
    """A banned word or ``re:`` pattern as it will be stored, or why it cannot be.

    Raises:
        AdminError: empty, too long, an invalid regular expression (with the regex error),
            a pattern that matches an empty prompt (it would refuse every prompt), or a
            word with no letters or digits.
    """
    entry = entry.strip()
    if not entry or entry == "re:":
        raise AdminError("Give a word, a phrase, or `re:` followed by a regular expression.")
    if len(entry) > MAX_ENTRY_LENGTH:
        raise AdminError(f"Keep entries under {MAX_ENTRY_LENGTH} characters.")
    if entry.startswith("re:"):
        try:
            pattern = compile_banned_entry(entry)
        except re.error as exc:
            raise AdminError(f"`{entry[3:]}` is not a valid regular expression: {exc}.") from None
        if pattern.search(""):
            raise AdminError(f"`{entry[3:]}` matches an empty prompt, so it would refuse every prompt.")
        if backtracks(pattern):
            raise AdminError(f"`{entry[3:]}` takes too long to check (it backtracks on repeated characters, "
                             "as `(a+)+` does); write it without nested repeats.")
        return entry
    if not normalise(entry):
        raise AdminError("A banned word needs letters or digits.")
    return entry


async def add_banned_word(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, entry: str
) -> WordListChange:
    """Add a banned word (whole words, any case) or ``re:`` pattern to the server's list.

    Raises:
        AdminError: see :func:`check_banned_entry`; or the list is full.
    """
    entry = check_banned_entry(entry)
    guild = await locked_guild(session, guild_discord_id)
    entries = list(guild.banned_words or ())
    if any(_same_entry(existing, entry) for existing in entries):
        return WordListChange(tuple(entries), changed=False)
    if len(entries) >= MAX_BANNED_ENTRIES:
        raise AdminError(f"The list is full ({MAX_BANNED_ENTRIES} entries); remove some first.")
    entries.append(entry)
    guild = await update_guild_policy(session=session, guild_id=guild.id, banned_words=entries)
    await record_action(session, guild, "banned_word_added", admin_discord_id, entry=entry)
    return WordListChange(tuple(guild.banned_words), changed=True)


async def remove_banned_word(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, entry: str
) -> WordListChange:
    """Take a word or pattern off the server's list.

    Raises:
        AdminError: it is not on the list.
    """
    guild = await locked_guild(session, guild_discord_id)
    entries = list(guild.banned_words or ())
    kept = [existing for existing in entries if not _same_entry(existing, entry.strip())]
    if len(kept) == len(entries):
        raise AdminError(f"`{entry.strip()}` is not on this server's banned list.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, banned_words=kept)
    await record_action(session, guild, "banned_word_removed", admin_discord_id, entry=entry.strip())
    return WordListChange(tuple(guild.banned_words), changed=True)


def _same_entry(a: str, b: str) -> bool:
    # Words compare as the filter sees them (case and accents ignored); patterns as typed.
    if a.startswith("re:") or b.startswith("re:"):
        return a == b
    return normalise(a) == normalise(b)
