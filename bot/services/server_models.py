"""Which of the bot's models a server offers, and checking a model or LoRA a member names.

A server allows every model (an empty list, the default, which also covers models added
later) or a list of them; admins change it with ``/admin models`` (each change recorded like
every admin action in :mod:`bot.services.admin`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.admin import AdminError, GuildPolicy, locked_guild, record_action
from bot.services.errors import RefusalReason, Refused
from core.models import LoraEntry, ModelCatalog, ModelEntry
from core.spec import JobSpec, LoraRef
from db.repositories import trained_loras, update_guild_policy, upsert_guild


class HasAllowedModels(Protocol):
    """A server's policy or ``guilds`` row: anything that lists its allowed models."""

    @property
    def allowed_models(self) -> Sequence[str]: ...


def allowed_model_names(catalog: ModelCatalog, policy: HasAllowedModels | None) -> list[str]:
    """The catalog's models a server allows, in catalog order (all of them when it sets none)."""
    allowed = {name.lower() for name in (policy.allowed_models if policy is not None else ())}
    return [name for name in catalog.names() if not allowed or name.lower() in allowed]


def validate_model(
    name: str | None, guild_policy: HasAllowedModels | None, *, catalog: ModelCatalog
) -> ModelEntry:
    """The catalog entry for ``name`` (None: the default model) if the server allows it.

    Autocomplete only suggests; a value typed or pasted by hand is checked here again.

    Raises:
        Refused: ``MODEL``: unknown, or not allowed on this server; the message lists the
            models the user can use.
    """
    usable = allowed_model_names(catalog, guild_policy)
    entry: ModelEntry | None
    try:
        entry = catalog.get(name)
    except KeyError:
        entry = None
    if entry is not None and entry.name in usable:
        return entry
    shown = name if name is not None else catalog.default.name
    what = "is not available" if entry is None else "is not allowed on this server"
    choices = ", ".join(f"`{m}`" for m in usable) or "none"
    raise Refused(f"The model `{shown}` {what}. Models you can use: {choices}.", reason=RefusalReason.MODEL)


def offers_lora(model: ModelEntry, name: str) -> bool:
    """Whether the model's catalog entry offers a LoRA called ``name``."""
    return any(e.name.lower() == name.lower() for e in model.loras)


async def resolve_loras(
    *, sessions: async_sessionmaker[AsyncSession], user_id: int, guild_id: int | None, spec: JobSpec,
    model: ModelEntry,
) -> JobSpec:
    """``spec`` with every LoRA checked: one the model offers stays a name; any other must be
    a ready LoRA the member trained here (or one shared with the server) for this model, and
    gets its stored file's key and sha256; one already resolved (a button under an earlier
    job) keeps its file while the LoRA is not deleted.

    Raises:
        Refused: ``INPUT``: no such LoRA, one trained on another model, or a deleted one
            (its file is removed: :mod:`gpu_worker.purging`).
    """
    refs: list[LoraRef] = []
    for ref in spec.loras:
        if ref.sha256 is not None:
            async with sessions() as session:
                live = await trained_loras.file_is_live(session=session, sha256=ref.sha256)
            if not live:
                raise Refused(
                    f"The LoRA `{ref.name}` this image was made with has been deleted, so it cannot be used "
                    "again. Nothing was charged.",
                    reason=RefusalReason.INPUT,
                )
            refs.append(ref)
            continue
        if offers_lora(model, ref.name):
            refs.append(ref)
            continue
        async with sessions() as session:
            found = await trained_loras.usable_lora(session=session, user_id=user_id, guild_id=guild_id, name=ref.name)
        if found is None:
            validate_lora(ref.name, model)  # refused with the model's own list
            raise AssertionError("unreachable")  # pragma: no cover
        if found.model != model.name:
            raise Refused(
                f"The LoRA `{found.name}` was trained on `{found.model}`; add `--model {found.model}` to use it.",
                reason=RefusalReason.INPUT,
            )
        refs.append(LoraRef(found.name, ref.weight, found.storage_key, found.sha256))
    return dataclasses.replace(spec, loras=tuple(refs))


def validate_lora(name: str, model: ModelEntry) -> LoraEntry:
    """The LoRA called ``name`` that ``model`` offers.

    Raises:
        Refused: ``INPUT``: the model has no such LoRA; the message lists the ones it has.
    """
    try:
        return model.lora(name)
    except KeyError:
        offered = ", ".join(f"`{e.name}`" for e in model.loras) or "none"
        raise Refused(
            f"The model `{model.name}` has no LoRA `{name}`, and you have no trained LoRA of that name here. "
            f"Its LoRAs: {offered} (`/lora list` shows yours).",
            reason=RefusalReason.INPUT,
        ) from None


async def allow_model(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, name: str, catalog: ModelCatalog
) -> GuildPolicy:
    """Let members use a model (a no-op while every model is allowed).

    Raises:
        AdminError: the catalog has no such model.
    """
    entry = _catalog_entry(catalog, name)
    guild = await locked_guild(session, guild_discord_id)
    allowed = list(guild.allowed_models or ())
    if allowed and entry.name not in allowed:
        allowed.append(entry.name)
        guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=allowed)
        await record_action(session, guild, "model_allowed", admin_discord_id, model=entry.name)
    return GuildPolicy.from_row(guild)


async def disallow_model(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int, name: str, catalog: ModelCatalog
) -> GuildPolicy:
    """Stop members using a model; while every model was allowed, all the others stay allowed.

    Raises:
        AdminError: the catalog has no such model, or it is the last one allowed.
    """
    entry = _catalog_entry(catalog, name)
    guild = await locked_guild(session, guild_discord_id)
    allowed = allowed_model_names(catalog, guild)
    if entry.name not in allowed:
        return GuildPolicy.from_row(guild)
    remaining = [m for m in allowed if m != entry.name]
    if not remaining:
        raise AdminError(f"`{entry.name}` is the only model allowed here; allow another one first.")
    guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=remaining)
    await record_action(session, guild, "model_disallowed", admin_discord_id, model=entry.name)
    return GuildPolicy.from_row(guild)


async def allow_all_models(
    *, session: AsyncSession, guild_discord_id: int, admin_discord_id: int
) -> GuildPolicy:
    """Let members use every model the bot offers, including ones added later."""
    guild = await upsert_guild(session=session, discord_id=guild_discord_id)
    guild = await update_guild_policy(session=session, guild_id=guild.id, allowed_models=[])
    await record_action(session, guild, "models_all_allowed", admin_discord_id)
    return GuildPolicy.from_row(guild)


def _catalog_entry(catalog: ModelCatalog, name: str) -> ModelEntry:
    try:
        return catalog.get(name.strip())
    except KeyError:
        names = ", ".join(f"`{m}`" for m in catalog.names())
        raise AdminError(f"There is no model `{name.strip()}`. Models: {names}.") from None
