"""Users and guilds: created on first sight, keyed by their Discord ids."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Guild, GuildBan, User

# Guild columns an admin command may change through update_guild_policy.
GUILD_POLICY_FIELDS = frozenset(
    {
        "nsfw_policy",
        "banned_words",
        "max_running",
        "max_queued",
        "gallery_enabled",
        "relax_allowed",
        "allowed_models",
        "role_quotas",
        "daily_grant",
        "monthly_grant",
    }
)


async def upsert_user(*, session: AsyncSession, discord_id: int) -> User:
    """The user with this Discord id, created (balance 0) if new."""
    # Read first: nearly every call finds the user, and an "ON CONFLICT DO UPDATE" would
    # write (and row-lock) the user on every command, contending with credit holds.
    user = await session.scalar(select(User).where(User.discord_id == discord_id))
    if user is not None:
        return user
    stmt = pg_insert(User).values(discord_id=discord_id).on_conflict_do_nothing().returning(User)
    user = (await session.scalars(stmt)).one_or_none()
    if user is None:  # another process created it between our read and insert
        user = (await session.scalars(select(User).where(User.discord_id == discord_id))).one()
    return user


async def upsert_guild(*, session: AsyncSession, discord_id: int) -> Guild:
    """The guild with this Discord id, created with the default policy if new."""
    guild = await session.scalar(select(Guild).where(Guild.discord_id == discord_id))
    if guild is not None:
        return guild
    stmt = pg_insert(Guild).values(discord_id=discord_id).on_conflict_do_nothing().returning(Guild)
    guild = (await session.scalars(stmt)).one_or_none()
    if guild is None:
        guild = (await session.scalars(select(Guild).where(Guild.discord_id == discord_id))).one()
    return guild


async def update_guild_policy(*, session: AsyncSession, guild_id: int, **changes: Any) -> Guild:
    """Change a guild's policy columns (names in :data:`GUILD_POLICY_FIELDS`).

    Raises:
        ValueError: for a name that is not a policy column.
    """
    unknown = set(changes) - GUILD_POLICY_FIELDS
    if unknown:
        raise ValueError(f"not guild policy fields: {', '.join(sorted(unknown))}")
    stmt = (
        update(Guild)
        .where(Guild.id == guild_id)
        .values(**changes, updated_at=func.now())
        .returning(Guild)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one()


async def update_user_settings(*, session: AsyncSession, user_id: int, changes: dict[str, Any]) -> User:
    """Merge ``changes`` into the user's settings (JSON object merge; other keys are kept)."""
    stmt = (
        update(User)
        .where(User.id == user_id)
        .values(settings=User.settings.op("||")(changes), updated_at=func.now())
        .returning(User)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one()


async def set_user_banned(*, session: AsyncSession, user_id: int, banned: bool) -> None:
    """Ban or unban a user from making jobs."""
    await session.execute(update(User).where(User.id == user_id).values(banned=banned, updated_at=func.now()))


async def ban_reasons(*, session: AsyncSession, user_id: int, guild_id: int | None) -> tuple[bool, str | None, bool]:
    """Whether the user is banned everywhere, and whether (and why) this server banned them.

    Returns:
        ``(banned everywhere, the server's reason or None, banned by the server)``.
    """
    everywhere = bool(await session.scalar(select(User.banned).where(User.id == user_id)))
    if guild_id is None:
        return everywhere, None, False
    row = (
        await session.execute(
            select(GuildBan.reason).where(GuildBan.guild_id == guild_id, GuildBan.user_id == user_id)
        )
    ).first()
    return everywhere, (row[0] if row is not None else None), row is not None


async def lock_user(*, session: AsyncSession, user_id: int) -> None:
    """Lock the user's row until the transaction ends (requests of one user go one at a time)."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())


async def guild_by_id(*, session: AsyncSession, guild_id: int | None) -> Guild | None:
    """A server's row by ``guilds.id`` (None for None: a direct message)."""
    return await session.get(Guild, guild_id) if guild_id is not None else None


async def user_by_discord_id(*, session: AsyncSession, discord_id: int) -> User | None:
    """A user's row by Discord id, without creating it."""
    return await session.scalar(select(User).where(User.discord_id == discord_id))


async def balance_of(*, session: AsyncSession, user_id: int) -> int:
    """The user's credits as stored now."""
    return int(await session.scalar(select(User.balance).where(User.id == user_id)) or 0)


async def discord_id_of(*, session: AsyncSession, user_id: int) -> int | None:
    """The Discord id of ``users.id``."""
    return await session.scalar(select(User.discord_id).where(User.id == user_id))


async def settings_of(*, session: AsyncSession, discord_id: int) -> dict[str, Any] | None:
    """A user's stored settings by Discord id (None for a user the bot has not seen)."""
    return await session.scalar(select(User.settings).where(User.discord_id == discord_id))


async def guild_by_discord_id(*, session: AsyncSession, discord_id: int) -> Guild | None:
    """A server's row by Discord id, if the bot has ever worked there."""
    return await session.scalar(select(Guild).where(Guild.discord_id == discord_id))


async def lock_guild(*, session: AsyncSession, guild_id: int) -> Guild:
    """A server's row, re-read and locked until the transaction ends (read-modify-write)."""
    locked = await session.scalar(
        select(Guild).where(Guild.id == guild_id).with_for_update().execution_options(populate_existing=True)
    )
    assert locked is not None
    return locked
