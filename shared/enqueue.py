"""Hand jobs to ARQ: one Redis round trip for one job or a whole batch.

ARQ's own `enqueue_job` costs four round trips (WATCH, EXISTS, MULTI/EXEC). This Lua script
does the same check-and-set atomically inside Redis: a job whose payload or result key exists
is left alone, which makes re-enqueueing the same job id (by the reconciler) harmless.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms
from arq.jobs import serialize_job
from redis.exceptions import RedisError

from shared.errors import QueueUnavailable
from shared.keys import job_key, queue_key, result_key
from shared.redis import serialize_payload

_ENQUEUE_LUA = """
local added = 0
for i = 0, #KEYS / 3 - 1 do
    local queue, job, result = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
    local id, score = ARGV[i * 4 + 1], ARGV[i * 4 + 2]
    local ttl, payload = ARGV[i * 4 + 3], ARGV[i * 4 + 4]
    if redis.call('EXISTS', job, result) == 0 then
        redis.call('PSETEX', job, ttl, payload)
        redis.call('ZADD', queue, score, id)
        added = added + 1
    end
end
return added
"""


@dataclass(frozen=True)
class Delivery:
    """What ARQ needs to run a job: which function, on which queue, from when."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    queue: str
    run_at: datetime | None = None


async def enqueue(redis: ArqRedis, deliveries: Sequence[Delivery]) -> int:
    """Put jobs on their ARQ queues; returns how many were new. Redis errors: QueueUnavailable."""
    if not deliveries:
        return 0
    now_ms = int(time.time() * 1000)
    keys: list[str] = []
    argv: list[str] = []
    for delivery in deliveries:
        job_id = str(delivery.job_id)
        score = int(delivery.run_at.timestamp() * 1000) if delivery.run_at else now_ms
        # ARQ expires a payload a day after its run time; the reconciler restores lost ones.
        ttl_ms = max(score - now_ms, 0) + expires_extra_ms
        # The payload carries only identity; the worker reads args from PostgreSQL.
        payload = serialize_job(
            delivery.name,
            (),
            {"tenant_id": str(delivery.tenant_id)},
            None,
            now_ms,
            serializer=serialize_payload,
        )
        keys += [queue_key(delivery.queue), job_key(job_id), result_key(job_id)]
        argv += [job_id, str(score), str(ttl_ms), payload.decode()]
    try:
        added = await redis.eval(_ENQUEUE_LUA, len(keys), *keys, *argv)  # type: ignore[misc,unused-ignore]
    except (RedisError, OSError) as exc:
        raise QueueUnavailable() from exc
    return int(added)
