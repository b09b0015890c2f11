"""A running job's lease: ARQ's in-progress key, kept short and renewed while the job runs.

ARQ sets the in-progress key once, for the longest timeout of any function (here days), so a
worker killed mid-job would block its jobs for that long. The runner instead shortens the key
to `lease_seconds` at start and renews it every third of that: if the worker dies, the key
expires within one lease and another worker picks the job up (it is still on its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.keys import in_progress_key

log = structlog.get_logger("jobgate.worker")


async def _renew_forever(redis: ArqRedis, key: str, lease_ms: int) -> None:
    while True:
        try:
            await redis.pexpire(key, lease_ms)
        except (RedisError, OSError) as exc:
            # Keep running: a short Redis outage must not kill a healthy job. If the lease
            # lapses meanwhile, the job may run twice; its completion is recorded once.
            log.warning("lease.renew_failed", error=type(exc).__name__)
        await asyncio.sleep(lease_ms / 3000)


@contextlib.asynccontextmanager
async def held_lease(redis: ArqRedis, job_id: str, lease_seconds: float) -> AsyncIterator[None]:
    """Keep the job's in-progress key alive for `lease_seconds` at a time while the block runs."""
    renewer = asyncio.create_task(
        _renew_forever(redis, in_progress_key(job_id), int(lease_seconds * 1000))
    )
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
