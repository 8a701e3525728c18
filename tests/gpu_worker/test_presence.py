"""A worker's presence heartbeat on the real Redis: written, renewed, removed on a clean stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from core.workers import WorkerPresence, last_served_key, presence_key, serving
from gpu_worker.presence import PresenceThread


def test_the_heartbeat_writes_renews_and_removes_the_record(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGINARIUM_WORKER_ID", raising=False)  # start() sets it for its pool
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


def test_pool_processes_report_their_warm_models_through_the_presence(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.render import models_text
    from core.models_file import load_catalog
    from gpu_worker.warm_routing import report

    monkeypatch.delenv("IMAGINARIUM_WORKER_ID", raising=False)
    client = redis.Redis.from_url(redis_url)
    thread = PresenceThread(client, models=["shapes", "flux"], lanes=["fast"], worker_id="gpu-w", interval_s=0.1)
    thread.start()  # sets IMAGINARIUM_WORKER_ID for the pool processes it would fork
    try:
        report(client, ["shapes"], busy=False)  # what a pool process does after each job
        time.sleep(0.3)
        record = WorkerPresence.from_json(client.get(presence_key("gpu-w")) or b"")
        assert record is not None and record.warm == ("shapes",)
        text = models_text(load_catalog(None, data_dir=tmp_path), workers=[record])
        assert "🟢 1 worker (1 warm) · `shapes`" in text
    finally:
        thread.stop()
        for key in client.scan_iter(match="imaginarium:warm:gpu-w:*"):
            client.delete(key)
