"""What the bot's handlers may use of the running bot: its services, as a protocol.

Handlers (cogs, buttons, replies, autocomplete) reach the bot through
:func:`bot.replies.bot_of` or a cog's ``self.bot`` and see it as a :class:`BotContext`; only
:mod:`bot.app` knows the concrete :class:`~bot.app.ImaginariumBot`, which is built from
these services by :mod:`bot.cli`. So no module of the bot imports the module that
assembles it, and a test can hand a handler any object with these attributes.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.checks import BannedWordsCache
from bot.services.publish import RenderPublisher
from bot.services.workers import WorkerDirectory
from core.models import ModelCatalog


class ImageReader(Protocol):
    """Reads stored image files by key (the worker's store, read without the worker's code)."""

    async def read(self, key: str) -> bytes: ...


class AckMemory(Protocol):
    """Where a job's acknowledgement message is remembered (its result replaces it)."""

    async def remember(self, job_id: uuid.UUID, *, channel_id: int, message_id: int, size_limit: int) -> None: ...


class DeliveryPort(Protocol):
    """What handlers use of :class:`bot.delivery.Delivery`."""

    @property
    def acks(self) -> AckMemory: ...

    def job_lock(self, job_id: uuid.UUID) -> AbstractAsyncContextManager[Any]: ...

    async def is_delivered(self, job_id: uuid.UUID) -> bool: ...

    async def image_file(
        self,
        key: str,
        *,
        stem: str,
        flagged: bool,
        policy: Any,
        in_dm: bool,
        channel_id: int | None,
        size_limit: int,
    ) -> tuple[Any, str | None]: ...

    async def prepare(self, job: Any, *, owner: int, guild: Any, size_limit: int) -> Any: ...


class BotContext(Protocol):
    """The running bot as its handlers see it."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...

    @property
    def publisher(self) -> RenderPublisher: ...

    @property
    def catalog(self) -> ModelCatalog: ...

    @property
    def banned_words(self) -> BannedWordsCache: ...

    @property
    def images(self) -> ImageReader: ...

    @property
    def delivery(self) -> DeliveryPort: ...

    @property
    def workers(self) -> WorkerDirectory:
        """The live workers (bot.services.workers)."""
        ...

    @property
    def image_hosts(self) -> frozenset[str] | None:
        """Hosts image links may point to (``IMAGE_URL_HOSTS``); None: any."""
        ...

    @property
    def editor(self) -> Any:
        """The web gallery's mask editor (:class:`bot.drawing.EditorConfig`), or None."""
        ...

    @property
    def redis(self) -> Any:
        """The asyncio Redis client (stop keys of running jobs, progress, delivery markers)."""
        ...
