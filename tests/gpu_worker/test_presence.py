"""A worker's presence heartbeat on the real Redis: written, renewed, removed on a clean stop."""

from __future__ import annotations

import time

import redis

from core.workers import WorkerPresence, last_served_key, presence_key, serving
from gpu_worker.presence import PresenceThread


def test_the_heartbeat_writes_renews_and_removes_the_record(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    thread = PresenceThread(client, models=["sdxl", "flux"], lanes=["fast"], worker_id="gpu-a", interval_s=0.1)
    thread.start()
    try:
        record = WorkerPresence.from_json(client.get(presence_key("gpu-a")) or b"")
        assert record is not None and record.models == ("sdxl", "flux") and record.version
        assert [p.worker_id for p in serving([record], "flux", "fast")] == ["gpu-a"]
        assert serving([record], "flux", "relax") == [] and serving([record], "sd15") == []
        client.expire(presence_key("gpu-a"), 1)
        time.sleep(0.3)
        assert client.ttl(presence_key("gpu-a")) > 1  # renewed by the next beat
        assert abs(float(client.get(last_served_key("sdxl")) or 0) - time.time()) < 5
    finally:
        thread.stop()
    assert client.get(presence_key("gpu-a")) is None


def test_a_corrupt_record_is_ignored() -> None:
    assert WorkerPresence.from_json(b"not json") is None
    assert WorkerPresence.from_json(b'{"models": []}') is None
