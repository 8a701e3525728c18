"""Engines and session factories.

Sessions do not expire objects on commit (``expire_on_commit=False``): after a commit an
async caller can still read the attributes it loaded without a hidden, awaiting refresh.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def create_engine(database_url: str, **engine_kwargs: Any) -> AsyncEngine:
    """An async engine for a ``postgresql+asyncpg://`` URL.

    ``pool_pre_ping`` is on by default because bots and workers live for days and Postgres
    (or a proxy in front of it) may close idle connections.
    """
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(database_url, **engine_kwargs)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory every component uses: ``async with factory() as session: ...``."""
    return async_sessionmaker(engine, expire_on_commit=False)
