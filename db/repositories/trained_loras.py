"""LoRAs members train (``/train``): the request, the file, and who may use them.

A member may use a ready LoRA they trained in the server they trained it in, and every ready
LoRA an admin shared with that server. Names and triggers are unique per server (a partial
unique index; a failed training frees both).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import StoreDeletion, TrainedLora, TrainingPicture


class LoraNameTaken(Exception):
    """The name or the trigger word is taken in this server; ``what`` says which."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True, slots=True)
class UsableLora:
    """A ready LoRA a member may name in ``--lora``."""

    id: int
    name: str
    trigger: str
    model: str
    storage_key: str
    sha256: str
    owned: bool
    shared: bool


def _in_server(guild_id: int | None) -> Any:
    """The LoRAs of one server (``guild_id`` None: of direct messages)."""
    return func.coalesce(TrainedLora.guild_id, 0) == (guild_id or 0)


async def taken(*, session: AsyncSession, guild_id: int | None, name: str, trigger: str) -> str | None:
    """``"name"`` or ``"trigger"`` when another LoRA of the server (not failed) has it, else None."""
    scope = _in_server(guild_id)
    live = TrainedLora.status != "failed"
    if await session.scalar(select(TrainedLora.id).where(scope, live, func.lower(TrainedLora.name) == name.lower())):
        return "name"
    if await session.scalar(
        select(TrainedLora.id).where(scope, live, func.lower(TrainedLora.trigger) == trigger.lower())
    ):
        return "trigger"
    return None


async def create_training(
    *, session: AsyncSession, user_id: int, guild_id: int | None, name: str, trigger: str, kind: str, model: str,
    request: dict[str, Any], job_id: uuid.UUID | None = None,
) -> TrainedLora:
    """The row of a new training (in the caller's transaction).

    Raises:
        LoraNameTaken: another LoRA of the server has the name or trigger (also when one was
            made at the same moment: the unique index decides).
    """
    found = await taken(session=session, guild_id=guild_id, name=name, trigger=trigger)
    if found:
        raise LoraNameTaken(found)
    row = TrainedLora(name=name, trigger=trigger, kind=kind, model=model, user_id=user_id, guild_id=guild_id,
                      request=request, job_id=job_id)
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        raise LoraNameTaken("trigger" if "trigger" in str(exc.orig) else "name") from None
    return row


async def add_pictures(
    *, session: AsyncSession, lora_id: int, pictures: list[tuple[bytes, int, int, str]]
) -> None:
    """The request's pictures ``(data, width, height, caption)``, in order."""
    session.add_all([
        TrainingPicture(lora_id=lora_id, index=n, data=data, width=w, height=h, caption=caption)
        for n, (data, w, h, caption) in enumerate(pictures)
    ])
    await session.flush()


async def pictures_of(*, session: AsyncSession, job_id: uuid.UUID) -> list[bytes]:
    """A training job's pictures, in order."""
    rows = await session.scalars(
        select(TrainingPicture.data).join(TrainedLora, TrainedLora.id == TrainingPicture.lora_id)
        .where(TrainedLora.job_id == job_id).order_by(TrainingPicture.index)
    )
    return list(rows)


async def attach_job(*, session: AsyncSession, lora_id: int, job_id: uuid.UUID) -> None:
    await session.execute(update(TrainedLora).where(TrainedLora.id == lora_id).values(job_id=job_id))


async def training_of(*, session: AsyncSession, job_id: uuid.UUID) -> TrainedLora | None:
    """The LoRA a training job trains."""
    return await session.scalar(select(TrainedLora).where(TrainedLora.job_id == job_id))


async def training_request(*, session: AsyncSession, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The stored request (:class:`core.training.TrainingRequest`) of a training job."""
    return await session.scalar(select(TrainedLora.request).where(TrainedLora.job_id == job_id))


async def mark_trained(
    *, session: AsyncSession, job_id: uuid.UUID, storage_key: str, sha256: str, size_bytes: int
) -> bool:
    """The file is stored: the LoRA is ready (False when it was not training any more)."""
    done = await session.execute(
        update(TrainedLora)
        .where(TrainedLora.job_id == job_id, TrainedLora.status == "training")
        .values(status="ready", storage_key=storage_key, sha256=sha256, size_bytes=size_bytes, ready_at=func.now())
    )
    return bool(getattr(done, "rowcount", 0))


def _usable(user_id: int, guild_id: int | None) -> Any:
    scope = _in_server(guild_id)
    return (TrainedLora.status == "ready") & scope & or_(TrainedLora.user_id == user_id, TrainedLora.shared)


async def usable_loras(
    *, session: AsyncSession, user_id: int, guild_id: int | None, model: str | None = None, limit: int = 100
) -> list[UsableLora]:
    """The ready LoRAs a member may use here (of ``model``, when given), newest first."""
    query = select(TrainedLora).where(_usable(user_id, guild_id))
    if model is not None:
        query = query.where(TrainedLora.model == model)
    rows = await session.scalars(query.order_by(TrainedLora.created_at.desc()).limit(limit))
    return [_usable_of(row, user_id) for row in rows]


async def usable_lora(
    *, session: AsyncSession, user_id: int, guild_id: int | None, name: str
) -> UsableLora | None:
    """The ready LoRA called ``name`` (any case) the member may use here."""
    row = await session.scalar(
        select(TrainedLora).where(_usable(user_id, guild_id), func.lower(TrainedLora.name) == name.lower())
    )
    return _usable_of(row, user_id) if row is not None else None


async def loras_of(*, session: AsyncSession, user_id: int, guild_id: int | None) -> list[TrainedLora]:
    """A member's LoRAs in a server (training, ready and failed), newest first."""
    scope = _in_server(guild_id)
    rows = await session.scalars(
        select(TrainedLora).where(scope, TrainedLora.user_id == user_id).order_by(TrainedLora.created_at.desc())
    )
    return list(rows)


async def loras_with_samples(*, session: AsyncSession, user_id: int) -> list[tuple[TrainedLora, list[int]]]:
    """A member's LoRAs in every server, newest first, each with the image ids of its samples
    (the images of its training job, in order)."""
    from db.models import Image

    rows = list(await session.scalars(
        select(TrainedLora).where(TrainedLora.user_id == user_id).order_by(TrainedLora.created_at.desc()).limit(200)
    ))
    job_ids = [r.job_id for r in rows if r.job_id is not None]
    samples: dict[uuid.UUID, list[int]] = {}
    if job_ids:
        for job_id, image_id in await session.execute(
            select(Image.job_id, Image.id).where(Image.job_id.in_(job_ids)).order_by(Image.job_id, Image.index)
        ):
            samples.setdefault(job_id, []).append(image_id)
    return [(row, samples.get(row.job_id, []) if row.job_id else []) for row in rows]


async def lora_named(*, session: AsyncSession, guild_id: int | None, name: str) -> TrainedLora | None:
    """The server's LoRA (not failed) called ``name``."""
    scope = _in_server(guild_id)
    return await session.scalar(
        select(TrainedLora).where(scope, TrainedLora.status != "failed", func.lower(TrainedLora.name) == name.lower())
    )


async def set_shared(*, session: AsyncSession, lora_id: int, shared: bool) -> None:
    await session.execute(update(TrainedLora).where(TrainedLora.id == lora_id).values(shared=shared))


async def delete_lora(*, session: AsyncSession, lora_id: int) -> TrainedLora | None:
    """Remove the row (its pictures with it); returns it. Its file is queued for removal from
    the store by a trigger (:func:`pending_deletions`, migration 0013)."""
    row = await session.get(TrainedLora, lora_id)
    if row is not None:
        await session.delete(row)
        await session.flush()
    return row


async def trainings_since(*, session: AsyncSession, since: datetime, user_id: int | None = None,
                          guild_id: int | None = None) -> int:
    """Trainings started since ``since`` (failed ones too: the GPU time was spent), by a
    member or in a server."""
    query = select(func.count()).select_from(TrainedLora).where(TrainedLora.created_at >= since)
    if user_id is not None:
        query = query.where(TrainedLora.user_id == user_id)
    if guild_id is not None:
        query = query.where(TrainedLora.guild_id == guild_id)
    return int(await session.scalar(query) or 0)


async def trainings_in_progress(*, session: AsyncSession, user_id: int) -> int:
    """A member's training jobs queued or running."""
    from db.models import Job, JobStatus

    return int(await session.scalar(
        select(func.count()).select_from(TrainedLora).join(Job, Job.id == TrainedLora.job_id)
        .where(TrainedLora.user_id == user_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    ) or 0)


async def file_is_live(*, session: AsyncSession, sha256: str) -> bool:
    """Whether a ready LoRA still has the file of this checksum (one deleted has none: a
    button under an image made with it may not queue it again)."""
    found = await session.scalar(
        select(TrainedLora.id).where(TrainedLora.sha256 == sha256, TrainedLora.status == "ready").limit(1)
    )
    return found is not None


async def pending_deletions(*, session: AsyncSession, limit: int = 100) -> list[tuple[str, str | None]]:
    """``(storage_key, sha256)`` of files queued for removal and not yet purged, oldest first,
    leaving out any a LoRA row names again."""
    rows = await session.execute(
        select(StoreDeletion.storage_key, StoreDeletion.sha256)
        .where(StoreDeletion.purged_at.is_(None),
               ~select(TrainedLora.id).where(TrainedLora.storage_key == StoreDeletion.storage_key).exists())
        .order_by(StoreDeletion.requested_at).limit(limit)
    )
    return [(key, sha) for key, sha in rows.all()]


async def deleted_checksums(*, session: AsyncSession) -> set[str]:
    """Checksums of every file queued for removal (purged or not) that no LoRA row has again:
    the local copies workers are to remove."""
    query = select(StoreDeletion.sha256).where(
        StoreDeletion.sha256.is_not(None),
        ~select(TrainedLora.id).where(TrainedLora.sha256 == StoreDeletion.sha256).exists(),
    )
    return {sha for sha in await session.scalars(query) if sha is not None}


async def mark_purged(*, session: AsyncSession, storage_keys: list[str]) -> None:
    """Note that these files are gone from the store."""
    if storage_keys:
        await session.execute(
            update(StoreDeletion).where(StoreDeletion.storage_key.in_(storage_keys)).values(purged_at=func.now())
        )


def _usable_of(row: TrainedLora, user_id: int) -> UsableLora:
    assert row.storage_key is not None and row.sha256 is not None  # ready rows have both (a CHECK)
    return UsableLora(row.id, row.name, row.trigger, row.model, row.storage_key, row.sha256,
                      owned=row.user_id == user_id, shared=row.shared)
