"""Text no database column can hold, found before it reaches one.

Postgres' ``text`` refuses the NUL character (U+0000), and a lone UTF-16 surrogate
(U+D800-U+DFFF: valid in a JSON string escape, so in a Discord option or a web query) has no
UTF-8 form at all. Either used to end in a database error halfway through a command; every
entry point for members' words (prompts, command options, captions, web queries) refuses it
first with a message naming the character.
"""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """The first character of ``text`` that cannot be stored, written ``U+XXXX``; None if none."""
    found = _UNSTORABLE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def without_unstorable(text: str) -> str:
    """``text`` with each character that cannot be stored made a space (for search words)."""
    return _UNSTORABLE.sub(" ", text)
