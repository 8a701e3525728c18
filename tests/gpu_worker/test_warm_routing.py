"""Warm routing's decisions on the real Redis: a cold process hands a job back only to an idle,
live, serving process that has the model loaded, and only a bounded number of times."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.workers import WORKER_ID_ENV, WorkerPresence, presence_key, warm_key
from gpu_worker.warm_routing import MAX_HANDOFFS, handoff_key, pool_reports, report, should_hand_back


@pytest.fixture
def client(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setenv(WORKER_ID_ENV, "cold@host")
    client = redis.Redis.from_url(redis_url)
    yield client
    for pattern in ("imaginarium:warm:*", "imaginarium:worker:*", "imaginarium:handoff:*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)


def _worker(client: redis.Redis, worker_id: str, *, models: tuple[str, ...], lanes: tuple[str, ...] = ("fast",)) -> None:
    client.set(presence_key(worker_id), WorkerPresence(worker_id=worker_id, models=models, lanes=lanes).to_json())


def _pool(client: redis.Redis, worker_id: str, pid: int, warm: list[str], *, busy: bool) -> None:
    client.set(warm_key(worker_id, pid), json.dumps({"warm": warm, "busy": busy}))


def _decide(client: redis.Redis, job_id: uuid.UUID | None = None, *, loaded: tuple[str, ...] = ()) -> bool:
    return should_hand_back(client, job_id=job_id or uuid.uuid4(), model="sdxl", lane="fast", loaded=loaded)


def test_a_job_goes_back_to_an_idle_process_with_its_model_warm(client: redis.Redis) -> None:
    _worker(client, "warm@host", models=("sdxl", "flux"))
    _pool(client, "warm@host", 41, ["sdxl"], busy=False)
    assert _decide(client)
    assert not _decide(client, loaded=("sdxl",))  # warm here too: render here


@pytest.mark.parametrize("case", ["busy", "dead", "other lane", "not served", "cold there too", "itself"])
def test_no_hand_back_without_a_free_live_warm_process(client: redis.Redis, case: str) -> None:
    """Busy, gone (no presence), serving another lane or not the model, or only this process
    itself: the cold process renders (a free GPU beats waiting for a busy one)."""
    if case != "dead":
        lanes = ("relax",) if case == "other lane" else ("fast",)
        models = ("flux",) if case == "not served" else ("sdxl",)
        _worker(client, "warm@host", models=models, lanes=lanes)
    warm = ["flux"] if case == "cold there too" else ["sdxl"]
    if case == "itself":
        _pool(client, "cold@host", os.getpid(), warm, busy=False)
    else:
        _pool(client, "warm@host", 41, warm, busy=case == "busy")
    assert not _decide(client)


def test_a_job_is_handed_back_a_bounded_number_of_times(client: redis.Redis) -> None:
    _worker(client, "warm@host", models=("sdxl",))
    _pool(client, "warm@host", 41, ["sdxl"], busy=False)
    job_id = uuid.uuid4()
    assert [_decide(client, job_id) for _ in range(MAX_HANDOFFS + 2)] == [True] * MAX_HANDOFFS + [False, False]
    assert 0 < client.ttl(handoff_key(job_id)) <= 3600
    assert _decide(client)  # another job starts its own count


def test_a_pool_process_reports_what_it_has_loaded_and_whether_it_renders(client: redis.Redis) -> None:
    report(client, ["sdxl", "flux"], busy=True)
    (mine,) = [r for r in pool_reports(client) if r.worker_id == "cold@host"]
    assert (mine.pid, mine.warm, mine.busy) == (os.getpid(), ("sdxl", "flux"), True)
    assert 0 < client.ttl(warm_key("cold@host", os.getpid())) <= 120
    client.set(warm_key("junk@host", 7), b"not json")
    assert [r.worker_id for r in pool_reports(client)] == ["cold@host"]


def test_without_redis_the_process_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKER_ID_ENV, "cold@host")
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert not _decide(away)
    report(away, ["sdxl"], busy=False)  # never raises
