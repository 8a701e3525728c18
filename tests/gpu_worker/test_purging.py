"""A deleted trained LoRA's file leaves the image store and every worker's local copy."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.spec import JobKind, Lane
from db import repositories as repo
from db.models import StoreDeletion
from db.repositories import trained_loras as loras
from gpu_worker.purging import local_loras_dir, purge_deleted_files
from gpu_worker.store import LocalStore
from tests.db.factories import make_spec, next_discord_id


async def _stored_lora(sessions: async_sessionmaker[AsyncSession], store: LocalStore, data: bytes, name: str) -> tuple[int, str, str]:
    key = store.put(data, "application/octet-stream")  # as the worker stores a trained LoRA
    sha = key[:64]
    async with sessions() as session, session.begin():
        user = await repo.upsert_user(session=session, discord_id=next_discord_id())
        job = await repo.create_job(session=session, user_id=user.id, spec=make_spec(), model="shapes",
                                    lane=Lane.FAST, cost=0, kind=JobKind.TRAIN)
        row = await loras.create_training(session=session, user_id=user.id, guild_id=None, name=name,
                                          trigger=f"zz{name}", kind="subject", model="shapes", request={},
                                          job_id=job.job.id)
        assert await loras.mark_trained(session=session, job_id=job.job.id, storage_key=key, sha256=sha,
                                        size_bytes=len(data))
        return row.id, key, sha


async def test_a_deleted_loras_file_is_removed_from_the_store_and_local_copies(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "images")
    local = local_loras_dir(tmp_path)
    local.mkdir()
    gone_id, gone_key, gone_sha = await _stored_lora(session_factory, store, b"lora one", "one")
    _, kept_key, kept_sha = await _stored_lora(session_factory, store, b"lora two", "two")
    for sha in (gone_sha, kept_sha):
        (local / f"{sha}.safetensors").write_bytes(b"copy")
    (local / "not-a-checksum.safetensors").write_bytes(b"left alone")

    nothing = await purge_deleted_files(sessions=session_factory, store=store, local_dir=local)
    assert nothing.stored == () and nothing.local == ()

    async with session_factory() as session, session.begin():
        await loras.delete_lora(session=session, lora_id=gone_id)
    report = await purge_deleted_files(sessions=session_factory, store=store, local_dir=local)

    assert report.stored == (gone_key,) and report.local == (gone_sha,)
    assert not store.exists(gone_key) and store.exists(kept_key)
    assert sorted(p.name for p in local.iterdir()) == sorted([f"{kept_sha}.safetensors", "not-a-checksum.safetensors"])
    async with session_factory() as session:
        row = await session.get(StoreDeletion, gone_key)
        assert row is not None and row.purged_at is not None
    # Another worker's pass: the store is done, its own copy of the deleted LoRA goes.
    other = tmp_path / "other-worker"
    other.mkdir()
    (other / f"{gone_sha}.safetensors").write_bytes(b"copy")
    again = await purge_deleted_files(sessions=session_factory, store=store, local_dir=other)
    assert again.stored == () and again.local == (gone_sha,) and not any(other.iterdir())


async def test_a_store_that_fails_leaves_the_file_queued(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "images")
    lora_id, key, _ = await _stored_lora(session_factory, store, b"lora three", "three")
    async with session_factory() as session, session.begin():
        await loras.delete_lora(session=session, lora_id=lora_id)

    class Broken(LocalStore):
        def delete(self, key: str) -> None:
            raise OSError("the store is down")

    report = await purge_deleted_files(sessions=session_factory, store=Broken(tmp_path / "images"), local_dir=None)
    assert report.stored == ()
    async with session_factory() as session:
        assert await loras.pending_deletions(session=session) == [(key, key[:64])]
    assert (await purge_deleted_files(sessions=session_factory, store=store, local_dir=None)).stored == (key,)
