"""Users, guilds, the gallery's likes and favorites, and the moderation log."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import Lane
from db import repositories as repo
from db.models import Guild, Image, ModerationEvent, NsfwPolicy, User
from tests.db.factories import make_spec, next_discord_id


async def test_upsert_user_creates_once(session: AsyncSession) -> None:
    discord_id = next_discord_id()
    first = await repo.upsert_user(session=session, discord_id=discord_id)
    again = await repo.upsert_user(session=session, discord_id=discord_id)
    assert first.id == again.id
    assert (first.balance, first.banned, first.settings) == (0, False, {})


async def test_upsert_guild_starts_with_the_default_policy(session: AsyncSession) -> None:
    discord_id = next_discord_id()
    guild = await repo.upsert_guild(session=session, discord_id=discord_id)
    assert (await repo.upsert_guild(session=session, discord_id=discord_id)).id == guild.id
    assert guild.nsfw_policy == NsfwPolicy.SPOILER
    assert (guild.max_running, guild.max_queued) == (3, 10)
    assert guild.gallery_enabled and guild.relax_allowed
    assert (guild.banned_words, guild.allowed_models, guild.role_quotas) == ([], [], {})
    assert (guild.daily_grant, guild.monthly_grant) == (0, 0)


async def test_update_guild_policy(session: AsyncSession) -> None:
    guild = await repo.upsert_guild(session=session, discord_id=next_discord_id())
    updated = await repo.update_guild_policy(
        session=session,
        guild_id=guild.id,
        nsfw_policy=NsfwPolicy.WITHHOLD,
        banned_words=["gore"],
        role_quotas={"123": {"max_running": 5, "max_queued": 20}},
    )
    assert updated.nsfw_policy == NsfwPolicy.WITHHOLD and updated.banned_words == ["gore"]
    reread = await session.scalar(select(Guild.role_quotas).where(Guild.id == guild.id))
    assert reread == {"123": {"max_running": 5, "max_queued": 20}}


async def test_update_guild_policy_refuses_unknown_fields(session: AsyncSession) -> None:
    guild = await repo.upsert_guild(session=session, discord_id=next_discord_id())
    with pytest.raises(ValueError, match="discord_id"):
        await repo.update_guild_policy(session=session, guild_id=guild.id, discord_id=1)


async def test_user_settings_merge(session: AsyncSession, user: User) -> None:
    await repo.update_user_settings(
        session=session, user_id=user.id, changes={"aspect": "16:9", "private": True}
    )
    merged = await repo.update_user_settings(session=session, user_id=user.id, changes={"private": False})
    assert merged.settings == {"aspect": "16:9", "private": False}


async def test_ban_a_user(session: AsyncSession, user: User) -> None:
    await repo.set_user_banned(session=session, user_id=user.id, banned=True)
    assert await session.scalar(select(User.banned).where(User.id == user.id))


async def _image(session: AsyncSession, user: User, *, private: bool = False) -> Image:
    job = (
        await repo.create_job(
            session=session,
            user_id=user.id,
            spec=make_spec(),
            model="tiny",
            lane=Lane.FAST,
            cost=1,
            private=private,
        )
    ).job
    await repo.claim_job(session=session, job_id=job.id)
    await repo.finish_job(
        session=session, job_id=job.id, images=[repo.NewImage(0, 1, "k.png", 64, 64, "a" * 64)]
    )
    return (await session.scalars(select(Image).where(Image.job_id == job.id))).one()


async def test_likes_are_one_per_user_and_image(session: AsyncSession, user: User) -> None:
    image = await _image(session, user)
    fan = await repo.upsert_user(session=session, discord_id=next_discord_id())
    assert await repo.like_image(session=session, user_id=fan.id, image_id=image.id)
    assert not await repo.like_image(session=session, user_id=fan.id, image_id=image.id)
    assert await repo.like_image(session=session, user_id=user.id, image_id=image.id)
    assert await repo.count_likes(session=session, image_id=image.id) == 2
    assert await repo.unlike_image(session=session, user_id=fan.id, image_id=image.id)
    assert not await repo.unlike_image(session=session, user_id=fan.id, image_id=image.id)
    assert await repo.count_likes(session=session, image_id=image.id) == 1


async def test_images_outside_the_gallery_cannot_be_liked(session: AsyncSession, user: User) -> None:
    image = await _image(session, user, private=True)
    assert not await repo.like_image(session=session, user_id=user.id, image_id=image.id)
    assert await repo.count_likes(session=session, image_id=image.id) == 0


async def test_favorites(session: AsyncSession, user: User) -> None:
    image = await _image(session, user, private=True)
    assert await repo.favorite_image(session=session, user_id=user.id, image_id=image.id)
    assert not await repo.favorite_image(session=session, user_id=user.id, image_id=image.id)
    assert await repo.unfavorite_image(session=session, user_id=user.id, image_id=image.id)
    assert not await repo.unfavorite_image(session=session, user_id=user.id, image_id=image.id)


async def test_record_moderation_event(session: AsyncSession, user: User) -> None:
    guild = await repo.upsert_guild(session=session, discord_id=next_discord_id())
    event = await repo.record_moderation_event(
        session=session, kind="banned_word", user_id=user.id, guild_id=guild.id, detail={"word": "gore"}
    )
    stored = (await session.scalars(select(ModerationEvent).where(ModerationEvent.id == event.id))).one()
    assert (stored.kind, stored.user_id, stored.guild_id, stored.detail) == (
        "banned_word",
        user.id,
        guild.id,
        {"word": "gore"},
    )
    assert stored.created_at is not None
