"""Fixtures for the db tests."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db import repositories as repo
from db.models import User
from tests.db.factories import next_discord_id


@pytest.fixture
async def user(session: AsyncSession) -> User:
    """A user with 100 credits."""
    user_ = await repo.upsert_user(session=session, discord_id=next_discord_id())
    await repo.grant_credits(session=session, user_id=user_.id, amount=100)
    await session.refresh(user_)
    return user_
