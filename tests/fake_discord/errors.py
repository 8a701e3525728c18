"""Discord's error answers and the message limits it enforces, as the fake reproduces them.

Discord rejects a bad request with a JSON body ``{"code": ..., "message": ...}`` (and
``errors`` for form errors). The fake checks the limits a bot most often trips over
(content length, embeds, component rows and custom ids, upload size) so that an
end-to-end test fails the way production would, not later and elsewhere.
"""

from __future__ import annotations

from typing import Any

from tests.fake_discord.models import FLAG_COMPONENTS_V2, JSON, walk_components


class DiscordError(Exception):
    """An error answer: HTTP ``status`` with Discord's JSON error ``code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        data: JSON = {"message": self.message, "code": self.code}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


def unauthorized() -> DiscordError:
    return DiscordError(401, 0, "401: Unauthorized")


def not_found() -> DiscordError:
    return DiscordError(404, 0, "404: Not Found")


def unknown_channel() -> DiscordError:
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_guild() -> DiscordError:
    return DiscordError(404, 10004, "Unknown Guild")


def unknown_member() -> DiscordError:
    return DiscordError(404, 10007, "Unknown Member")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_user() -> DiscordError:
    return DiscordError(404, 10013, "Unknown User")


def unknown_command() -> DiscordError:
    return DiscordError(404, 10063, "Unknown application command")


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def invalid_webhook_token(status: int = 401) -> DiscordError:
    return DiscordError(status, 50027, "Invalid Webhook Token")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def cannot_edit_others() -> DiscordError:
    return DiscordError(403, 50005, "Cannot edit a message authored by another user")


def empty_message() -> DiscordError:
    return DiscordError(400, 50006, "Cannot send an empty message")


def too_large() -> DiscordError:
    return DiscordError(413, 40005, "Request entity too large")


def unknown_emoji() -> DiscordError:
    return DiscordError(400, 10014, "Unknown Emoji")


class FormErrors:
    """Collects field errors and raises them as one 50035 "Invalid Form Body"."""

    def __init__(self) -> None:
        self.errors: JSON = {}

    def add(self, path: str, code: str, message: str) -> None:
        node = self.errors
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def max_length(self, path: str, value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.errors:
            raise DiscordError(400, 50035, "Invalid Form Body", self.errors)


def invalid_form(path: str, message: str, code: str = "BASE_TYPE_INVALID") -> DiscordError:
    errors = FormErrors()
    errors.add(path, code, message)
    return DiscordError(400, 50035, "Invalid Form Body", errors.errors)


def check_message(payload: JSON, *, prefix: str = "") -> None:
    """Raise the 50035 Discord would for content, embeds or components over its limits."""
    errors = FormErrors()
    errors.max_length(f"{prefix}content", payload.get("content"), 2000)
    embeds = payload.get("embeds") or []
    errors.max_length(f"{prefix}embeds", embeds, 10)
    total = 0
    for i, embed in enumerate(embeds):
        path = f"{prefix}embeds.{i}"
        errors.max_length(f"{path}.title", embed.get("title"), 256)
        errors.max_length(f"{path}.description", embed.get("description"), 4096)
        fields = embed.get("fields") or []
        errors.max_length(f"{path}.fields", fields, 25)
        for j, fld in enumerate(fields):
            errors.max_length(f"{path}.fields.{j}.name", fld.get("name"), 256)
            errors.max_length(f"{path}.fields.{j}.value", fld.get("value"), 1024)
        footer = (embed.get("footer") or {}).get("text")
        author = (embed.get("author") or {}).get("name")
        errors.max_length(f"{path}.footer.text", footer, 2048)
        errors.max_length(f"{path}.author.name", author, 256)
        total += sum(len(x or "") for x in (embed.get("title"), embed.get("description"), footer, author))
        total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in fields)
    if total > 6000:
        errors.add(f"{prefix}embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    components = payload.get("components") or []
    flags = int(payload.get("flags") or 0)
    _check_components(errors, components, v2=bool(flags & FLAG_COMPONENTS_V2), prefix=f"{prefix}components")
    errors.raise_if_any()


def _check_components(errors: FormErrors, components: list[JSON], *, v2: bool, prefix: str) -> None:
    if not v2:
        errors.max_length(prefix, components, 5)
        for i, row in enumerate(components):
            if row.get("type") != 1:
                errors.add(
                    f"{prefix}.{i}.type", "UNION_TYPE_CHOICES", "Top-level components must be action rows."
                )
                continue
            children = row.get("components") or []
            if not children:
                errors.add(f"{prefix}.{i}.components", "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
            errors.max_length(f"{prefix}.{i}.components", children, 5)
            if any(c.get("type") != 2 for c in children) and len(children) > 1:
                errors.add(
                    f"{prefix}.{i}.components",
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
    else:
        errors.max_length(prefix, list(walk_components(components)), 40)
    seen: set[str] = set()
    for j, component in enumerate(walk_components(components)):
        path = f"{prefix}.{j}"
        kind = component.get("type")
        custom_id = component.get("custom_id")
        if kind == 2:
            errors.max_length(f"{path}.label", component.get("label"), 80)
            if component.get("style") == 5:
                if not component.get("url"):
                    errors.add(f"{path}.url", "BASE_TYPE_REQUIRED", "This field is required")
                if custom_id is not None:
                    errors.add(
                        f"{path}.custom_id",
                        "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                        "Link buttons cannot have a custom id",
                    )
            elif component.get("style") != 6 and not custom_id:
                errors.add(f"{path}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
        elif kind in (3, 5, 6, 7, 8):
            if not custom_id:
                errors.add(f"{path}.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
            errors.max_length(f"{path}.placeholder", component.get("placeholder"), 150)
            if kind == 3:
                options = component.get("options") or []
                if not options:
                    errors.add(f"{path}.options", "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
                errors.max_length(f"{path}.options", options, 25)
        if custom_id is not None:
            errors.max_length(f"{path}.custom_id", custom_id, 100)
            if custom_id in seen:
                errors.add(
                    f"{path}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def check_modal(data: JSON) -> None:
    """Raise the 50035 Discord would for a modal over its limits."""
    errors = FormErrors()
    if not data.get("custom_id"):
        errors.add("data.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
    errors.max_length("data.custom_id", data.get("custom_id"), 100)
    if not data.get("title"):
        errors.add("data.title", "BASE_TYPE_REQUIRED", "This field is required")
    errors.max_length("data.title", data.get("title"), 45)
    components = data.get("components") or []
    if not components:
        errors.add("data.components", "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
    errors.max_length("data.components", components, 5)
    errors.raise_if_any()


def check_choices(data: JSON) -> None:
    """Raise the 50035 Discord would for more than 25 autocomplete choices."""
    errors = FormErrors()
    choices = data.get("choices") or []
    errors.max_length("data.choices", choices, 25)
    for i, choice in enumerate(choices):
        errors.max_length(f"data.choices.{i}.name", choice.get("name"), 100)
    errors.raise_if_any()
