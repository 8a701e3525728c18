"""Encoding what a user types into a command or a modal the way Discord's client sends it.

Slash-command options are checked against the command the bot synced (required options,
choices, lengths, ranges) and typed by it; users, members, roles, channels and attachments
go into ``resolved``. Modal answers mirror the modal's own component tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tests.fake_discord.models import JSON, FakeGuild, FakeRole

if TYPE_CHECKING:
    from tests.fake_discord.server import FakeDiscord


class FakeDiscordError(AssertionError):
    """The test asked the fake for something Discord's client would not let a user do."""


def build_options(
    fake: FakeDiscord,
    schema: list[JSON],
    given: Mapping[str, Any],
    guild: FakeGuild | None,
    resolved: dict[str, dict[str, JSON]],
    *,
    focused: str | None,
    where: str,
) -> list[JSON]:
    """The ``options`` array for ``given`` values under a command's option ``schema``.

    ``focused`` names the option being typed (autocomplete): it is sent as a partial string
    and required options may be missing. Raises FakeDiscordError where Discord's client
    would not let the user send.
    """
    by_name = {o["name"]: o for o in schema}
    unknown = set(given) - set(by_name)
    if unknown:
        raise FakeDiscordError(f"{where}: no option(s) {sorted(unknown)} (has {sorted(by_name)})")
    if focused is not None and focused not in given:
        raise FakeDiscordError(f"{where}: the focused option {focused!r} needs a (partial) value")
    out: list[JSON] = []
    for option in schema:
        name = option["name"]
        if name not in given:
            if option.get("required") and focused is None:
                raise FakeDiscordError(f"{where}: option {name!r} is required")
            continue
        value = given[name]
        if name == focused:
            out.append({"name": name, "type": option["type"], "value": str(value), "focused": True})
            continue
        encoded = option_value(fake, option, value, guild, resolved, f"{where} {name}")
        out.append({"name": name, "type": option["type"], "value": encoded})
    return out


def option_value(
    fake: FakeDiscord,
    option: JSON,
    value: Any,
    guild: FakeGuild | None,
    resolved: dict[str, dict[str, JSON]],
    where: str,
) -> Any:
    """One option's wire value; users, roles, channels and files are added to ``resolved``."""
    kind = option["type"]
    if kind == 3:
        value = str(value)
        if not option.get("min_length", 0) <= len(value) <= option.get("max_length", 6000):
            raise FakeDiscordError(f"{where}: length {len(value)} outside the allowed range")
    elif kind in (4, 10):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FakeDiscordError(f"{where}: expected a number, got {value!r}")
        if kind == 4 and value != int(value):
            raise FakeDiscordError(f"{where}: expected an integer, got {value!r}")
        value = int(value) if kind == 4 else float(value)
        if not option.get("min_value", -(2**53)) <= value <= option.get("max_value", 2**53):
            raise FakeDiscordError(f"{where}: {value} outside the allowed range")
    elif kind == 5:
        if not isinstance(value, bool):
            raise FakeDiscordError(f"{where}: expected a bool, got {value!r}")
    elif kind == 6 or (kind == 9 and not isinstance(value, FakeRole)):
        member = fake._member(guild, value)
        resolved.setdefault("users", {})[str(member.id)] = member.user.payload()
        if guild is not None:
            resolved.setdefault("members", {})[str(member.id)] = member.payload(
                with_user=False, permissions=guild.permissions_of(member)
            )
        return str(member.id)
    elif kind in (8, 9):
        if guild is None:
            raise FakeDiscordError(f"{where}: roles exist only in guilds")
        role = value if isinstance(value, FakeRole) else guild.role(value)
        resolved.setdefault("roles", {})[str(role.id)] = role.payload()
        return str(role.id)
    elif kind == 7:
        channel = fake.channel(value)
        data = channel.payload()
        data["permissions"] = str((1 << 41) - 1)
        resolved.setdefault("channels", {})[str(channel.id)] = data
        return str(channel.id)
    elif kind == 11:
        attachment = fake._user_attachment(value)
        resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.payload()
        return str(attachment.id)
    else:
        raise FakeDiscordError(f"{where}: option type {kind} is not supported by the fake")
    choices = option.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise FakeDiscordError(
            f"{where}: {value!r} is not one of the choices {[c['value'] for c in choices]}"
        )
    return value


def modal_answer(component: JSON, values: Mapping[str, Any], known: set[str]) -> JSON | None:
    """The submitted form of one modal component (None for display-only ones); adds ids to ``known``."""
    kind = component.get("type")
    if kind == 1:
        children = [modal_answer(c, values, known) for c in component.get("components", [])]
        return {"type": 1, "components": [c for c in children if c is not None]}
    if kind == 18:
        child = modal_answer(component["component"], values, known)
        return None if child is None else {"type": 18, "component": child}
    custom_id = component.get("custom_id")
    if custom_id is None:
        return None
    known.add(custom_id)
    if kind == 4:
        value = str(values.get(custom_id, component.get("value") or ""))
        if component.get("required", True) and not value:
            raise FakeDiscordError(f"text input {custom_id!r} is required")
        if value and not component.get("min_length", 0) <= len(value) <= component.get("max_length", 4000):
            raise FakeDiscordError(f"text input {custom_id!r}: length {len(value)} outside the allowed range")
        return {"type": 4, "custom_id": custom_id, "value": value}
    chosen = values.get(custom_id, [])
    return {
        "type": kind,
        "custom_id": custom_id,
        "values": [chosen] if isinstance(chosen, str) else list(chosen),
    }
