"""Trained LoRAs in Postgres: unique names and triggers per server, who may use one, the
file marking it ready, and a failed or cancelled training freeing its name."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.spec import JobKind, Lane
from db import repositories as repo
from db.models import TrainedLora
from db.repositories import trained_loras as loras
from tests.db.factories import make_spec, next_discord_id


async def _member(session: AsyncSession) -> int:
    user = await repo.upsert_user(session=session, discord_id=next_discord_id())
    await repo.grant_credits(session=session, user_id=user.id, amount=100)
    return user.id


async def _training(session: AsyncSession, user_id: int, guild_id: int | None, name: str, trigger: str) -> int:
    job = await repo.create_job(session=session, user_id=user_id, spec=make_spec(), model="shapes", lane=Lane.FAST,
                                cost=9, kind=JobKind.TRAIN)
    row = await loras.create_training(session=session, user_id=user_id, guild_id=guild_id, name=name,
                                      trigger=trigger, kind="subject", model="shapes", request={"pictures": []},
                                      job_id=job.job.id)
    return row.id


async def test_names_and_triggers_are_unique_per_server_until_a_training_fails(session: AsyncSession) -> None:
    guild = (await repo.upsert_guild(session=session, discord_id=next_discord_id())).id
    other_guild = (await repo.upsert_guild(session=session, discord_id=next_discord_id())).id
    alice, bob = await _member(session), await _member(session)
    first = await _training(session, alice, guild, "Kitty", "zorbl")
    with pytest.raises(loras.LoraNameTaken) as taken:
        await _training(session, bob, guild, "kitty", "florp")
    assert taken.value.what == "name"
    with pytest.raises(loras.LoraNameTaken) as taken:
        await _training(session, bob, guild, "doggo", "ZORBL")
    assert taken.value.what == "trigger"
    await _training(session, bob, other_guild, "kitty", "zorbl")  # another server: free
    # Its job fails (any path): the LoRA is failed and the name and trigger are free again.
    row = await session.get(TrainedLora, first)
    assert row is not None and row.job_id is not None
    assert await repo.fail_job(session=session, job_id=row.job_id, error="boom")
    await session.refresh(row)
    assert row.status == "failed"
    await _training(session, bob, guild, "kitty", "zorbl")


async def test_a_ready_lora_is_its_owners_until_shared(session: AsyncSession) -> None:
    guild = (await repo.upsert_guild(session=session, discord_id=next_discord_id())).id
    alice, bob = await _member(session), await _member(session)
    lora_id = await _training(session, alice, guild, "kitty", "zorbl")
    row = await session.get(TrainedLora, lora_id)
    assert row is not None and row.job_id is not None
    assert await loras.usable_loras(session=session, user_id=alice, guild_id=guild) == []  # still training
    assert await loras.mark_trained(session=session, job_id=row.job_id, storage_key="loras/k.safetensors",
                                    sha256="ab" * 32, size_bytes=1000)
    assert not await loras.mark_trained(session=session, job_id=row.job_id, storage_key="x", sha256="c", size_bytes=1)
    mine = await loras.usable_loras(session=session, user_id=alice, guild_id=guild, model="shapes")
    assert [(u.name, u.owned, u.storage_key) for u in mine] == [("kitty", True, "loras/k.safetensors")]
    assert await loras.usable_lora(session=session, user_id=bob, guild_id=guild, name="KITTY") is None
    assert await loras.usable_lora(session=session, user_id=alice, guild_id=None, name="kitty") is None
    await loras.set_shared(session=session, lora_id=lora_id, shared=True)
    shared = await loras.usable_lora(session=session, user_id=bob, guild_id=guild, name="KITTY")
    assert shared is not None and not shared.owned and shared.shared
    assert await loras.usable_loras(session=session, user_id=bob, guild_id=guild, model="flux") == []
    deleted = await loras.delete_lora(session=session, lora_id=lora_id)
    assert deleted is not None and deleted.storage_key == "loras/k.safetensors"
    assert await loras.usable_loras(session=session, user_id=bob, guild_id=guild) == []


async def _ready(session: AsyncSession, user_id: int, guild_id: int | None, name: str, sha: str) -> TrainedLora:
    row = await session.get(TrainedLora, await _training(session, user_id, guild_id, name, f"zz{name}"))
    assert row is not None and row.job_id is not None
    assert await loras.mark_trained(session=session, job_id=row.job_id, storage_key=f"{sha}.safetensors",
                                    sha256=sha, size_bytes=10)
    return row


async def test_a_deleted_loras_file_is_queued_for_removal_whatever_deleted_it(session: AsyncSession) -> None:
    from sqlalchemy import delete

    guild = (await repo.upsert_guild(session=session, discord_id=next_discord_id())).id
    alice, bob = await _member(session), await _member(session)
    kept = await _ready(session, alice, guild, "kept", "aa" * 32)
    gone = await _ready(session, alice, guild, "gone", "bb" * 32)
    bobs = await _ready(session, bob, guild, "bobs", "cc" * 32)
    assert await loras.pending_deletions(session=session) == []
    assert await loras.file_is_live(session=session, sha256="bb" * 32)

    assert await loras.delete_lora(session=session, lora_id=gone.id) is not None
    # Deleted another way (a member's or server's rows cascading, by hand): queued all the same.
    await session.execute(delete(TrainedLora).where(TrainedLora.id == bobs.id))

    pending = await loras.pending_deletions(session=session)
    assert sorted(pending) == [(f"{'bb' * 32}.safetensors", "bb" * 32), (f"{'cc' * 32}.safetensors", "cc" * 32)]
    assert await loras.deleted_checksums(session=session) == {"bb" * 32, "cc" * 32}
    assert not await loras.file_is_live(session=session, sha256="bb" * 32)
    assert await loras.file_is_live(session=session, sha256=kept.sha256 or "")
    await loras.mark_purged(session=session, storage_keys=[f"{'bb' * 32}.safetensors"])
    assert await loras.pending_deletions(session=session) == [(f"{'cc' * 32}.safetensors", "cc" * 32)]
    # A file a LoRA row names again (the same bytes trained again) is not removed.
    await _ready(session, alice, guild, "again", "cc" * 32)
    assert await loras.pending_deletions(session=session) == []
    assert await loras.deleted_checksums(session=session) == {"bb" * 32}
