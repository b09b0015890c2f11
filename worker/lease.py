"""Running jobs' leases: ARQ's in-progress keys, kept short and renewed while the jobs run.

ARQ sets the in-progress key for the longest timeout of any function (here days), so a worker
killed mid-job would block its jobs for that long. jobgate's take script (`worker.loop`)
sets the key to `lease_seconds` instead, and one task per worker renews the keys of all its
running jobs every third of that, in one pipeline: if the worker dies, its keys expire within
one lease and other workers pick the jobs up (they are still on their queues). One renewer
for all jobs, not one task and one round trip per job: the hot path only adds and removes a
set member.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.keys import in_progress_key

log = structlog.get_logger("jobgate.worker")


class Leases:
    """The in-progress keys of this worker's running jobs, renewed together."""

    def __init__(self, redis: ArqRedis, lease_seconds: float) -> None:
        self._redis = redis
        self.lease_ms = int(lease_seconds * 1000)
        self._keys: set[str] = set()

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        """Keep the job's in-progress key alive while the block runs."""
        key = in_progress_key(job_id)
        self._keys.add(key)
        try:
            yield
        finally:
            self._keys.discard(key)

    async def renew(self) -> None:
        """Push every held key's expiry one lease ahead (PEXPIRE on a gone key does nothing)."""
        if not self._keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys:
                pipe.pexpire(key, self.lease_ms)
            await pipe.execute()

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:
                # Keep running: a short Redis outage must not kill healthy jobs. If a lease
                # lapses meanwhile, its job may run twice; its completion is recorded once.
                log.warning("lease.renew_failed", error=type(exc).__name__)
