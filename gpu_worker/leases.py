"""Job leases in Redis: which worker process is rendering a job right now.

The database says a job is ``running``; only a live lease says that someone still works on
it. A worker takes the lease *before* it claims the job and keeps it alive with a heartbeat
while it renders, so a ``running`` job without a lease belongs to a worker that died. That
lets a redelivered task take the job over at once when the dead process lived on the same
host (its pid is gone), and the reconciler re-queue it when the lease expired.

Every change is a compare-and-set on the owner string (``host:pid:nonce``), so a worker
never extends or drops a lease that someone else took over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator

import psutil
import redis

logger = logging.getLogger(__name__)

LEASE_PREFIX = "imaginarium:lease:"
REPUBLISHED_PREFIX = "imaginarium:republished:"
DEFAULT_LEASE_TTL_S = 60

# Set the value only if the key still holds the expected owner (or vanished), then expire.
_SWAP = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or current == false then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def new_owner() -> str:
    """An owner string for this process: ``host:pid:nonce`` (the nonce tells restarts apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead_here(owner: str) -> bool:
    """Whether ``owner`` names a process on this host that no longer exists."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid, _nonce = parts
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


class LeaseBook:
    """Job leases (and re-publish marks) in one Redis database.

    Args:
        client: a redis-py client (``decode_responses=True``).
        owner: this process's owner string (:func:`new_owner`).
        ttl_s: how long a lease lives without a heartbeat.
    """

    def __init__(
        self, client: redis.Redis, *, owner: str | None = None, ttl_s: int = DEFAULT_LEASE_TTL_S
    ) -> None:
        self.client = client
        self.owner = owner or new_owner()
        self.ttl_s = ttl_s

    @staticmethod
    def key(job_id: object) -> str:
        """The Redis key of a job's lease."""
        return f"{LEASE_PREFIX}{job_id}"

    def holder(self, job_id: object) -> str | None:
        """Who holds the job's lease, or None."""
        value = self.client.get(self.key(job_id))
        return value.decode() if isinstance(value, bytes) else value

    def acquire(self, job_id: object, owner: str | None = None) -> bool:
        """Take the job's lease if it is free, or held by a process of this host that died.

        Returns:
            True if ``owner`` (default: this process) holds the lease now.
        """
        me = owner or self.owner
        key = self.key(job_id)
        if self.client.set(key, me, nx=True, ex=self.ttl_s):
            return True
        current = self.holder(job_id)
        if current == me:
            return bool(self.client.expire(key, self.ttl_s))
        if current is not None and owner_is_dead_here(current):
            taken = bool(self.client.eval(_SWAP, 1, key, current, me, self.ttl_s))
            if taken:
                logger.warning("took over the lease of job %s from %s, which died", job_id, current)
            return taken
        return False

    def extend(self, job_id: object, owner: str | None = None) -> bool:
        """Renew the lease for another TTL if ``owner`` still holds it."""
        return bool(self.client.eval(_EXTEND, 1, self.key(job_id), owner or self.owner, self.ttl_s))

    def release(self, job_id: object, owner: str | None = None) -> bool:
        """Drop the lease if ``owner`` still holds it."""
        return bool(self.client.eval(_DROP, 1, self.key(job_id), owner or self.owner))

    def held_by_another(self, job_id: object) -> bool:
        """Whether a process other than this one, alive as far as this host can tell, holds
        the job's lease (one of this host that died does not count: its lease can be taken)."""
        current = self.holder(job_id)
        return current is not None and current != self.owner and not owner_is_dead_here(current)

    def is_held(self, job_id: object) -> bool:
        """Whether anyone holds the job's lease."""
        return bool(self.client.exists(self.key(job_id)))

    def mark_republished(self, job_id: object, ttl_s: int) -> bool:
        """Note that a queued job's task was published again; False if that was done within ``ttl_s``.

        Bounds the duplicates the reconciler sends for a job that waits in a long queue.
        """
        return bool(self.client.set(f"{REPUBLISHED_PREFIX}{job_id}", "1", nx=True, ex=ttl_s))

    @contextlib.contextmanager
    def heartbeat(self, job_id: object, interval_s: float | None = None) -> Iterator[None]:
        """Keep the lease alive from a background thread while the block runs."""
        interval = interval_s if interval_s is not None else max(self.ttl_s / 3, 0.1)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    if not self.extend(job_id):
                        logger.warning("lost the lease of job %s", job_id)
                        return
                except redis.RedisError:
                    # A broker blip must not kill the render; the next beat tries again.
                    logger.warning("could not renew the lease of job %s", job_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
