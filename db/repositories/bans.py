"""Server bans: a member a server's admins have stopped from making images there."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Guild, GuildBan, User


async def ban_member(
    *, session: AsyncSession, guild_id: int, user_id: int, reason: str | None, banned_by: int
) -> bool:
    """Ban a member from a server (again: the reason and the admin are updated).

    Returns:
        True if the member was not banned there before.
    """
    inserted = await session.execute(
        pg_insert(GuildBan)
        .values(guild_id=guild_id, user_id=user_id, reason=reason, banned_by=banned_by)
        .on_conflict_do_nothing()
        .returning(GuildBan.user_id)
    )
    if inserted.first() is not None:
        return True
    await session.execute(
        update(GuildBan)
        .where(GuildBan.guild_id == guild_id, GuildBan.user_id == user_id)
        .values(reason=reason, banned_by=banned_by)
    )
    return False


async def unban_member(*, session: AsyncSession, guild_id: int, user_id: int) -> bool:
    """Lift a member's ban; False if there was none."""
    removed = await session.execute(
        delete(GuildBan)
        .where(GuildBan.guild_id == guild_id, GuildBan.user_id == user_id)
        .returning(GuildBan.user_id)
    )
    return removed.first() is not None


async def banned_members(*, session: AsyncSession, guild_discord_id: int) -> list[tuple[int, str | None]]:
    """``(discord id, reason)`` of a server's banned members, most recent first."""
    rows = await session.execute(
        select(User.discord_id, GuildBan.reason)
        .join(GuildBan, GuildBan.user_id == User.id)
        .join(Guild, Guild.id == GuildBan.guild_id)
        .where(Guild.discord_id == guild_discord_id)
        .order_by(GuildBan.created_at.desc())
    )
    return [(int(discord_id), reason) for discord_id, reason in rows]
