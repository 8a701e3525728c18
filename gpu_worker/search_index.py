"""Prompts into the gallery's search by meaning: each done job's prompt is embedded here,
in the worker, once its result is recorded (never in the bot's event loop).

A failure here never touches the job (it is done and delivered either way): it is logged,
and ``imaginarium index-prompts`` embeds whatever was missed, as it does for jobs made
before the database had pgvector.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db import embeddings
from db.repositories import gallery_search

logger = logging.getLogger(__name__)


async def index_prompt(sessions: async_sessionmaker[AsyncSession], job_id: uuid.UUID, prompt: str) -> None:
    """Embed one done job's prompt; logs (and swallows) what goes wrong."""
    if not prompt.strip():
        return
    try:
        async with sessions() as session, session.begin():
            # No pgvector: nothing to store, so no need to load the model or embed.
            if not await gallery_search.has_extension(session, "vector"):
                return
            vector = embeddings.embed([prompt])[0]
            await gallery_search.store_embeddings(session=session, vectors={job_id: vector})
    except embeddings.EmbeddingsUnavailable:
        return
    except Exception as exc:
        logger.warning("job %s: prompt not indexed for search (%s)", job_id, type(exc).__name__)
