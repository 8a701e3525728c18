"""Autocomplete for model, LoRA and sampler options.

Suggestions come from the model catalog (only the models this server allows) and from
:data:`core.samplers.SAMPLER_NAMES`, matched loosely as the user types: exact, then prefix,
then the start of any word, then anywhere in the name, then the letters in order, ignoring
case, spaces and punctuation (``dpm2m`` finds "DPM++ 2M"). Discord shows at most 25.

Autocomplete only suggests: a user can type anything, so values are checked again when
the command runs (:func:`validate_model` and :func:`validate_lora` for models and LoRAs;
the prompt parser does it for samplers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import discord
from discord import app_commands

from bot.replies import bot_of
from bot.services.server_models import allowed_model_names, validate_lora, validate_model
from core.models import ModelCatalog
from core.samplers import SAMPLER_NAMES
from db.repositories import guild_by_discord_id, trained_loras, user_by_discord_id

__all__ = [
    "MAX_CHOICES",
    "fuzzy",
    "lora_autocomplete",
    "lora_choices",
    "model_autocomplete",
    "model_choices",
    "sampler_autocomplete",
    "sampler_choices",
    "validate_lora",
    "validate_model",
]

MAX_CHOICES = 25
"""Discord shows no more than this many suggestions."""
_NAME_LIMIT = 100


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("+", "p"))


def _in_order(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(char in rest for char in needle)


def fuzzy(names: Iterable[str], current: str, *, limit: int = MAX_CHOICES) -> list[str]:
    """``names`` that match what the user typed, best first (ties keep their order).

    An empty ``current`` keeps every name, in order.
    """
    needle = _key(current)
    ranked: list[tuple[int, int, str]] = []
    for position, name in enumerate(dict.fromkeys(names)):
        key = _key(name)
        if not needle or key == needle:
            score = 0
        elif key.startswith(needle):
            score = 1
        elif any(_key(word).startswith(needle) for word in re.split(r"[\s_\-./:]+", name)):
            score = 2
        elif needle in key:
            score = 3
        elif _in_order(needle, key):
            score = 4
        else:
            continue
        ranked.append((score, position, name))
    return [name for _, _, name in sorted(ranked)][:limit]


def _label(name: str, detail: str = "") -> str:
    label = f"{name} — {detail}" if detail else name
    return label if len(label) <= _NAME_LIMIT else label[: _NAME_LIMIT - 1] + "…"


def model_choices(
    catalog: ModelCatalog, allowed: Sequence[str], current: str
) -> list[app_commands.Choice[str]]:
    """Models this server allows (``allowed`` empty: all of them) that match ``current``."""
    usable = allowed_model_names(catalog, _Allowed(allowed))
    return [
        app_commands.Choice(name=_label(name, catalog.get(name).description), value=name)
        for name in fuzzy(usable, current)
    ]


def lora_choices(
    catalog: ModelCatalog, allowed: Sequence[str], current: str, *, model: str | None = None,
    trained: Sequence[tuple[str, str, str]] = (),
) -> list[app_commands.Choice[str]]:
    """LoRAs of the allowed models (of ``model`` alone when it is one of them) matching
    ``current``: the trained ones the member may use (``(name, model, whose)``) first."""
    usable = allowed_model_names(catalog, _Allowed(allowed))
    if model is not None and model.lower() in {m.lower() for m in usable}:
        usable = [catalog.get(model).name]
    owners: dict[str, list[str]] = {}
    wanted = {m.lower() for m in usable}
    for name, base, whose in trained:
        if base.lower() in wanted:
            owners.setdefault(name, []).append(f"{whose}, {base}")
    for name in usable:
        for lora in catalog.get(name).loras:
            owners.setdefault(lora.name, []).append(name)
    return [
        app_commands.Choice(name=_label(lora, ", ".join(owners[lora])), value=lora)
        for lora in fuzzy(owners, current)
    ]


def sampler_choices(current: str) -> list[app_commands.Choice[str]]:
    """Samplers (A1111 names) that match ``current``."""
    return [app_commands.Choice(name=name, value=name) for name in fuzzy(SAMPLER_NAMES, current)]


class _Allowed:
    """The allowed-models list in the shape :func:`allowed_model_names` takes."""

    def __init__(self, names: Sequence[str]) -> None:
        self.allowed_models = names


async def _allowed_here(interaction: discord.Interaction) -> list[str]:
    if interaction.guild_id is None:
        return []
    async with bot_of(interaction).sessions() as session:
        guild = await guild_by_discord_id(session=session, discord_id=interaction.guild_id)
    return list(guild.allowed_models or []) if guild is not None else []


async def model_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete callback for a ``model`` option."""
    return model_choices(bot_of(interaction).catalog, await _allowed_here(interaction), current)


async def lora_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete callback for a ``lora`` option (narrowed by a ``model`` option filled in first)."""
    model = getattr(interaction.namespace, "model", None)
    return lora_choices(
        bot_of(interaction).catalog,
        await _allowed_here(interaction),
        current,
        model=model if isinstance(model, str) and model else None,
        trained=await _trained_here(interaction),
    )


async def _trained_here(interaction: discord.Interaction) -> list[tuple[str, str, str]]:
    """The ready trained LoRAs this member may use in this server: ``(name, model, whose)``."""
    async with bot_of(interaction).sessions() as session:
        user = await user_by_discord_id(session=session, discord_id=interaction.user.id)
        if user is None:
            return []
        guild = None
        if interaction.guild_id is not None:
            guild = await guild_by_discord_id(session=session, discord_id=interaction.guild_id)
            if guild is None:
                return []
        found = await trained_loras.usable_loras(session=session, user_id=user.id,
                                                 guild_id=guild.id if guild is not None else None)
    return [(lora.name, lora.model, "yours" if lora.owned else "shared") for lora in found]


async def sampler_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """Autocomplete callback for a ``sampler`` option."""
    return sampler_choices(current)
