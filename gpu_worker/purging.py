"""Removing the files of deleted trained LoRAs, from the image store and from this worker.

A LoRA a member deletes (``/lora delete``, or with their account or server) is theirs: its
file must not outlive it. Deleting its row queues the file (a trigger, migration 0013); each
pass of a worker's reconciler (:class:`gpu_worker.cli.ReconcilerThread`) then

- removes every queued file from the store and marks it purged (a file a LoRA row names
  again is left alone), and
- removes this worker's local copies of deleted LoRAs (``<data dir>/trained-loras``, where
  :meth:`gpu_worker.rendering.JobRenderer._trained_lora` keeps them), whichever worker
  purged the store.

A job queued with the LoRA before it was deleted then fails with "no longer stored" and is
refunded; a button under an earlier image made with it is refused before charging
(:func:`bot.services.server_models.resolve_loras`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories.trained_loras import deleted_checksums, mark_purged, pending_deletions
from gpu_worker.store import ImageStore

logger = logging.getLogger(__name__)

TRAINED_LORAS_DIR = "trained-loras"
"""The folder under the data dir that keeps a worker's copies of trained LoRAs."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def local_loras_dir(data_dir: Path) -> Path:
    """Where a worker keeps its copies of trained LoRAs (``<sha256>.safetensors``)."""
    return Path(data_dir) / TRAINED_LORAS_DIR


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one pass removed."""

    stored: tuple[str, ...] = ()
    """Store keys removed."""
    local: tuple[str, ...] = ()
    """Checksums of local copies removed."""


async def purge_deleted_files(
    *, sessions: async_sessionmaker[AsyncSession], store: ImageStore, local_dir: Path | None, limit: int = 100
) -> PurgeReport:
    """One pass (see the module docstring); a store that fails leaves its file queued."""
    async with sessions() as session:
        pending = await pending_deletions(session=session, limit=limit)
        checksums = await deleted_checksums(session=session) if local_dir is not None else set()
    removed: list[str] = []
    for key, _sha in pending:
        try:
            await asyncio.to_thread(store.delete, key)
        except Exception:  # the next pass tries again
            logger.warning("could not remove a deleted LoRA's file from the store; will retry", exc_info=True)
            continue
        removed.append(key)
    if removed:
        async with sessions() as session, session.begin():
            await mark_purged(session=session, storage_keys=removed)
        logger.info("removed %d deleted LoRA file(s) from the store", len(removed))
    local = _remove_copies(local_dir, checksums) if local_dir is not None else []
    if local:
        logger.info("removed %d local copy(ies) of deleted LoRAs", len(local))
    return PurgeReport(tuple(removed), tuple(local))


def _remove_copies(local_dir: Path, checksums: set[str]) -> list[str]:
    """Remove ``<sha256>.safetensors`` copies in ``local_dir``; the checksums removed."""
    removed = []
    for sha in sorted(checksums):
        copy = local_dir / f"{sha}.safetensors"
        if _SHA256.match(sha) and copy.is_file():  # a checksum, never a path outside the folder
            copy.unlink(missing_ok=True)
            removed.append(sha)
    return removed
