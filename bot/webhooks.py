"""The interaction webhook's ``@original`` message, edited the one way the bot edits it.

Results (:mod:`bot.delivery.posting`), progress (:mod:`bot.progress`) and queue positions
(:mod:`bot.queue_refresh`) all edit a job's acknowledgement through its interaction token;
this module imports nothing of the bot's, so that any of them may use it.
"""

from __future__ import annotations

from typing import Any

from discord.http import Route, handle_message_parameters


async def edit_original(client: Any, token: str, **message: Any) -> dict[str, Any]:
    """Edit an interaction's original response (``@original``) through its webhook token, the
    one way the bot edits it (results, progress, queue positions): ``message`` are the arguments
    of discord.py's ``handle_message_parameters`` (content, attachments, embeds, view,
    allowed_mentions); files go as multipart.

    Raises:
        discord.HTTPException: what Discord answered (401/404: the token or message is gone).
    """
    route = Route(
        "PATCH",
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
        webhook_id=client.application_id,
        webhook_token=token,
    )
    with handle_message_parameters(**message) as params:
        if params.files:
            result = await client.http.request(route, files=params.files, form=params.multipart)
        else:
            result = await client.http.request(route, json=params.payload)
    return result if isinstance(result, dict) else {}
