"""``/admin``: what a server's owners and managers decide for their members.

Longer than 400 lines on purpose: discord.py builds ``/admin`` and its subcommand groups
(``words``, ``quota``, ``models``) from one ``GroupCog`` class, so its twenty commands live in
one class; each is a thin call into :mod:`bot.services.admin` and its siblings.

Discord shows these commands only to members with Manage Server (``default_permissions``);
the bot checks that permission again when a command runs, since a server can change who
sees a command. Every answer is ephemeral, and every change is logged (see
:mod:`bot.services.admin`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

import discord
from discord import app_commands
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot.autocomplete import fuzzy, model_autocomplete, model_choices
from bot.context import BotContext
from bot.services import admin as admin_service
from bot.services import banned_words, server_models
from bot.services.admin import GuildPolicy
from bot.services.errors import Refused
from core.models import ModelCatalog
from db.models import NsfwPolicy

MAX_CONTENT = 2000
_NO_MENTIONS = discord.AllowedMentions.none()
NSFW_CHOICES = [
    app_commands.Choice(
        name="Spoiler: flagged images behind a spoiler outside NSFW channels", value="spoiler"
    ),
    app_commands.Choice(
        name="Withhold: flagged images are not posted outside NSFW channels", value="withhold"
    ),
    app_commands.Choice(name="Allow: shown as they are in NSFW channels, spoilered elsewhere", value="allow"),
]


def _credits(n: int) -> str:
    return f"{n:,} credit" if n == 1 else f"{n:,} credits"


def _fit(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def _code(text: str) -> str:
    # Entries may hold backticks; double backticks with spaces show them literally.
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def policy_text(policy: GuildPolicy, catalog: ModelCatalog) -> str:
    """The server's settings as ``/admin show`` lists them."""
    models = server_models.allowed_model_names(catalog, policy)
    roles = ", ".join(
        f"<@&{q.role_id}>: {q.max_running if q.max_running is not None else '–'} rendering / "
        f"{q.max_queued if q.max_queued is not None else '–'} waiting"
        for q in policy.role_quotas
    )
    lines = [
        "**Server settings**",
        f"Caps: {policy.max_running} rendering, {policy.max_queued} waiting per member",
        f"Role quotas: {roles or 'none'}",
        f"Relax lane: {'allowed' if policy.relax_allowed else 'off'} · Gallery: "
        f"{'on' if policy.gallery_enabled else 'off'} · NSFW images: {policy.nsfw_policy.value}",
        f"Models: {'all' if not policy.allowed_models else 'only'} {', '.join(map(_code, models)) or 'none'}",
        f"Grants: {_credits(policy.daily_grant)} a day, {_credits(policy.monthly_grant)} a month",
        f"Banned words and patterns: {len(policy.banned_words)} (see /admin words list)",
    ]
    return _fit("\n".join(lines))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, group_name="admin", group_description="Server settings for the image bot"):
    """Server settings: credits, quotas, bans, banned words, NSFW, models, lanes, gallery, grants."""

    words = app_commands.Group(name="words", description="Banned words and patterns")
    quota = app_commands.Group(name="quota", description="How many jobs members may have")
    models = app_commands.Group(name="models", description="Which models members may use")

    def __init__(self, bot: BotContext) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:  # type: ignore[override]
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage("Admin commands work in a server.")
        if not interaction.permissions.manage_guild:
            raise app_commands.CheckFailure("Admin commands need the Manage Server permission.")
        return True

    async def _act(
        self, interaction: discord.Interaction, action: Callable[[AsyncSession], Awaitable[str]]
    ) -> None:
        """Defer (ephemeral), run ``action`` in one transaction, and show its answer or refusal."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            async with self.bot.sessions() as session, session.begin():
                message = await action(session)
        except Refused as refusal:
            message = refusal.message
        await interaction.edit_original_response(content=_fit(message), allowed_mentions=_NO_MENTIONS)

    def _ids(self, interaction: discord.Interaction) -> tuple[int, int]:
        assert interaction.guild_id is not None  # guild_only, and interaction_check
        return interaction.guild_id, interaction.user.id

    # -- overview --------------------------------------------------------------------------

    @app_commands.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this server's settings."""
        guild_id, _ = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await admin_service.get_policy(session=session, guild_discord_id=guild_id)
            return policy_text(policy, self.bot.catalog)

        await self._act(interaction, action)

    # -- credits and members ---------------------------------------------------------------

    @app_commands.command(name="grant")
    @app_commands.describe(member="Who gets the credits", amount="How many credits")
    async def grant(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        amount: app_commands.Range[int, 1, 1_000_000],
    ) -> None:
        """Give a member credits."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            outcome = await admin_service.grant(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                user_discord_id=member.id,
                amount=amount,
                key=f"admin-grant:{interaction.id}",
            )
            return f"Gave <@{member.id}> {_credits(amount)}. Their balance: {_credits(outcome.balance)}."

        await self._act(interaction, action)

    @app_commands.command(name="ban")
    @app_commands.describe(member="Who may no longer make images here", reason="Shown to them when they try")
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        reason: app_commands.Range[str, 1, 300] | None = None,
    ) -> None:
        """Stop a member making images in this server."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            new = await admin_service.ban_user(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                user_discord_id=member.id,
                reason=reason,
            )
            done = "is now banned" if new else "was already banned (reason updated)"
            return f"<@{member.id}> {done} from making images here. /admin unban lifts it."

        await self._act(interaction, action)

    @app_commands.command(name="unban")
    @app_commands.describe(member="Who may make images here again")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        """Let a banned member make images again."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            lifted = await admin_service.unban_user(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                user_discord_id=member.id,
            )
            return f"<@{member.id}> may make images again." if lifted else f"<@{member.id}> was not banned."

        await self._act(interaction, action)

    @app_commands.command(name="bans")
    async def bans(self, interaction: discord.Interaction) -> None:
        """List the members banned here."""
        guild_id, _ = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            banned = await admin_service.banned_users(session=session, guild_discord_id=guild_id)
            if not banned:
                return "Nobody is banned here."
            lines = [f"<@{user}>" + (f": {reason}" if reason else "") for user, reason in banned]
            return "**Banned members**\n" + "\n".join(lines)

        await self._act(interaction, action)

    # -- banned words ----------------------------------------------------------------------

    @words.command(name="add")
    @app_commands.describe(
        entry="A word or phrase (whole words, any case), or re:PATTERN for a regular expression"
    )
    async def words_add(
        self, interaction: discord.Interaction, entry: app_commands.Range[str, 1, 200]
    ) -> None:
        """Refuse prompts with this word or pattern."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            change = await banned_words.add_banned_word(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id, entry=entry
            )
            self.bot.banned_words.put(guild_id, change.entries)
            if not change.changed:
                return f"{_code(entry.strip())} is already on the list."
            return f"Prompts with {_code(entry.strip())} are now refused ({len(change.entries)} on the list)."

        await self._act(interaction, action)

    @words.command(name="remove")
    @app_commands.describe(entry="The word or pattern to take off the list")
    async def words_remove(
        self, interaction: discord.Interaction, entry: app_commands.Range[str, 1, 200]
    ) -> None:
        """Allow a banned word or pattern again."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            change = await banned_words.remove_banned_word(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id, entry=entry
            )
            self.bot.banned_words.put(guild_id, change.entries)
            return f"Removed {_code(entry.strip())} ({len(change.entries)} left on the list)."

        await self._act(interaction, action)

    @words_remove.autocomplete("entry")
    async def _banned_entries(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        async with self.bot.sessions() as session:
            policy = await admin_service.get_policy(session=session, guild_discord_id=interaction.guild_id)
            await session.rollback()  # upserting a new server here is not worth a write
        return [
            app_commands.Choice(name=e[:100], value=e)
            for e in fuzzy(policy.banned_words, current)
            if len(e) <= 100
        ]

    @words.command(name="list")
    async def words_list(self, interaction: discord.Interaction) -> None:
        """List the banned words and patterns."""
        guild_id, _ = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await admin_service.get_policy(session=session, guild_discord_id=guild_id)
            if not policy.banned_words:
                return "No banned words or patterns. Add one with /admin words add."
            return "**Banned words and patterns**\n" + ", ".join(map(_code, policy.banned_words))

        await self._act(interaction, action)

    # -- quotas ----------------------------------------------------------------------------

    @quota.command(name="server")
    @app_commands.describe(
        max_running="Jobs rendering at once (default 3)", max_queued="Jobs waiting (default 10)"
    )
    async def quota_server(
        self,
        interaction: discord.Interaction,
        max_running: app_commands.Range[int, 0, 100],
        max_queued: app_commands.Range[int, 0, 1000],
    ) -> None:
        """Set how many jobs each member may have."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.set_caps(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                max_running=max_running,
                max_queued=max_queued,
            )
            return f"Members may now have {max_running} jobs rendering and {max_queued} waiting."

        await self._act(interaction, action)

    @quota.command(name="role")
    @app_commands.describe(
        role="Members with this role get these caps (the most generous of their roles wins)",
        max_running="Jobs rendering at once (leave out: the server's number)",
        max_queued="Jobs waiting (leave out: the server's number)",
    )
    async def quota_role(
        self,
        interaction: discord.Interaction,
        role: discord.Role,
        max_running: app_commands.Range[int, 0, 100] | None = None,
        max_queued: app_commands.Range[int, 0, 1000] | None = None,
    ) -> None:
        """Give a role its own job caps."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await admin_service.set_role_quota(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                role_id=role.id,
                max_running=max_running,
                max_queued=max_queued,
            )
            running = max_running if max_running is not None else policy.max_running
            queued = max_queued if max_queued is not None else policy.max_queued
            return f"Members with <@&{role.id}> may have {running} jobs rendering and {queued} waiting."

        await self._act(interaction, action)

    @quota.command(name="clear")
    @app_commands.describe(role="The role whose own caps to remove")
    async def quota_clear(self, interaction: discord.Interaction, role: discord.Role) -> None:
        """Remove a role's own job caps."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.clear_role_quota(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id, role_id=role.id
            )
            return f"<@&{role.id}> has no caps of its own any more; the server's apply."

        await self._act(interaction, action)

    # -- models ----------------------------------------------------------------------------

    @models.command(name="allow")
    @app_commands.describe(model="A model the bot offers")
    async def models_allow(
        self, interaction: discord.Interaction, model: app_commands.Range[str, 1, 100]
    ) -> None:
        """Let members use a model."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await server_models.allow_model(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                name=model,
                catalog=self.bot.catalog,
            )
            return self._models_answer(policy)

        await self._act(interaction, action)

    @models_allow.autocomplete("model")
    async def _every_model(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(self.bot.catalog, [], current)

    @models.command(name="disallow")
    @app_commands.describe(model="A model members may use now")
    @app_commands.autocomplete(model=model_autocomplete)
    async def models_disallow(
        self, interaction: discord.Interaction, model: app_commands.Range[str, 1, 100]
    ) -> None:
        """Stop members using a model."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await server_models.disallow_model(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                name=model,
                catalog=self.bot.catalog,
            )
            return self._models_answer(policy)

        await self._act(interaction, action)

    @models.command(name="all")
    async def models_all(self, interaction: discord.Interaction) -> None:
        """Let members use every model, including ones added later."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            policy = await server_models.allow_all_models(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id
            )
            return self._models_answer(policy)

        await self._act(interaction, action)

    def _models_answer(self, policy: GuildPolicy) -> str:
        names = ", ".join(map(_code, server_models.allowed_model_names(self.bot.catalog, policy)))
        return f"Members may use {'every model' if not policy.allowed_models else 'only'}: {names}."

    # -- switches --------------------------------------------------------------------------

    @app_commands.command(name="nsfw")
    @app_commands.describe(policy="What to do with images the classifier flags as NSFW")
    @app_commands.choices(policy=NSFW_CHOICES)
    async def nsfw(self, interaction: discord.Interaction, policy: app_commands.Choice[str]) -> None:
        """Choose how NSFW-flagged images are posted."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.set_nsfw_policy(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                policy=NsfwPolicy(policy.value),
            )
            return f"NSFW policy: {policy.name}. Flagged images never enter the gallery."

        await self._act(interaction, action)

    @app_commands.command(name="relax")
    @app_commands.describe(allowed="Whether members may use the free, slower relax lane")
    async def relax(self, interaction: discord.Interaction, allowed: bool) -> None:
        """Allow or forbid the free relax lane."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.set_relax(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id, allowed=allowed
            )
            return (
                "The relax lane is allowed." if allowed else "The relax lane is off; every job costs credits."
            )

        await self._act(interaction, action)

    @app_commands.command(name="gallery")
    @app_commands.describe(enabled="Whether /gallery works in this server")
    async def gallery(self, interaction: discord.Interaction, enabled: bool) -> None:
        """Turn the server gallery on or off."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.set_gallery(
                session=session, guild_discord_id=guild_id, admin_discord_id=admin_id, enabled=enabled
            )
            return "The gallery is on." if enabled else "The gallery is off (published images are kept)."

        await self._act(interaction, action)

    @app_commands.command(name="grants")
    @app_commands.describe(
        daily="Credits each member gets per day (0: none)", monthly="Credits per month (0: none)"
    )
    async def grants(
        self,
        interaction: discord.Interaction,
        daily: app_commands.Range[int, 0, 100_000],
        monthly: app_commands.Range[int, 0, 100_000],
    ) -> None:
        """Set the credits members get every day and month."""
        guild_id, admin_id = self._ids(interaction)

        async def action(session: AsyncSession) -> str:
            await admin_service.set_grants(
                session=session,
                guild_discord_id=guild_id,
                admin_discord_id=admin_id,
                daily=daily,
                monthly=monthly,
            )
            return (
                f"Members get {_credits(daily)} a day and {_credits(monthly)} a month (UTC), "
                "paid with their first request of each period."
            )

        await self._act(interaction, action)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(cast("BotContext", bot)))
