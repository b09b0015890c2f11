"""Moving due jobs (delayed submits, retries) from the scheduled set onto their queues."""

from __future__ import annotations

import asyncio

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.jobs.enqueue import promote_due

log = structlog.get_logger("jobgate.worker")


async def promote_forever(redis: ArqRedis, interval_seconds: float) -> None:
    """Promote due jobs every `interval_seconds`; every worker runs this, the script is atomic."""
    while True:
        try:
            while await promote_due(redis) > 0:
                pass  # a full batch moved: there may be more due right now
        except (RedisError, OSError) as exc:
            log.warning("promote.failed", error=type(exc).__name__)
        await asyncio.sleep(interval_seconds)
