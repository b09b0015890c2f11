"""Hand jobs to ARQ: one Redis round trip for one job or a whole batch.

Priorities. ARQ takes the lowest scores first among those not in the future. A due job's
score is its due time plus its priority's offset (critical -2·SPAN, default -SPAN, low 0), so
any waiting critical job sorts before any default job, and those before low ones, while jobs
of one priority keep first-in-first-out order. A future score would mean "not yet" to ARQ, so
jobs that must wait (delayed submits, retries) go to one `scheduled` sorted set by due time;
`promote_due` moves them to their queue with their priority offset once due.

ARQ's own `enqueue_job` costs four round trips (WATCH, EXISTS, MULTI/EXEC). The scripts here
do the same check-and-set atomically inside Redis: a job whose payload or result key exists
is left alone, which makes re-enqueueing the same job id (the reconciler does) harmless.
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

from shared.contracts import Priority
from shared.errors import QueueUnavailable
from shared.keys import ABORT_SET, SCHEDULED_SET, job_key, queue_key, result_key
from shared.redis import serialize_payload

PRIORITY_SPAN_MS = 10**12  # about 31 years: wider than any wait, so priorities never overlap
PRIORITY_OFFSET_MS: dict[Priority, int] = {
    "critical": -2 * PRIORITY_SPAN_MS,
    "default": -PRIORITY_SPAN_MS,
    "low": 0,
}

_ENQUEUE_LUA = """
local now = tonumber(ARGV[1])
local added = 0
for i = 0, #KEYS / 3 - 1 do
    local queue, job, result = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
    local base = 1 + i * 5
    local id, due, offset = ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
    local ttl, payload = ARGV[base + 4], ARGV[base + 5]
    if redis.call('EXISTS', job, result) == 0 then
        redis.call('PSETEX', job, ttl, payload)
        if due > now then
            redis.call('ZADD', KEYS[#KEYS], due, queue .. '|' .. offset .. '|' .. id)
        else
            redis.call('ZADD', queue, due + tonumber(offset), id)
        end
        added = added + 1
    end
end
return added
"""

_PROMOTE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for i = 1, #due, 2 do
    local queue, offset, id = string.match(due[i], '^(.*)|(-?%d+)|([^|]+)$')
    redis.call('ZADD', queue, tonumber(due[i + 1]) + tonumber(offset), id)
    redis.call('ZREM', KEYS[1], due[i])
end
return #due / 2
"""

_WITHDRAW_LUA = """
for i = 0, (#KEYS - 1) / 2 - 1 do
    local queue, job = KEYS[2 + i * 2], KEYS[3 + i * 2]
    redis.call('ZREM', queue, ARGV[1 + i * 2])
    redis.call('ZREM', KEYS[1], ARGV[2 + i * 2])
    redis.call('DEL', job)
end
"""


@dataclass(frozen=True)
class Delivery:
    """What ARQ needs to run a job: which function, on which queue, how urgent, from when."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    queue: str
    priority: Priority = "default"
    run_at: datetime | None = None

    def scheduled_member(self) -> str:
        """This job's entry in the scheduled set (queue, priority offset and id)."""
        return f"{queue_key(self.queue)}|{PRIORITY_OFFSET_MS[self.priority]}|{self.job_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def enqueue(redis: ArqRedis, deliveries: Sequence[Delivery]) -> int:
    """Put jobs on their queues (or the scheduled set); returns how many were new."""
    if not deliveries:
        return 0
    now_ms = _now_ms()
    keys: list[str] = []
    argv: list[str] = [str(now_ms)]
    for delivery in deliveries:
        job_id = str(delivery.job_id)
        due_ms = int(delivery.run_at.timestamp() * 1000) if delivery.run_at else now_ms
        # ARQ expires a payload a day after its due time; the reconciler restores lost ones.
        ttl_ms = max(due_ms - now_ms, 0) + expires_extra_ms
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
        offset = PRIORITY_OFFSET_MS[delivery.priority]
        argv += [job_id, str(due_ms), str(offset), str(ttl_ms), payload.decode()]
    keys.append(SCHEDULED_SET)
    try:
        added = await redis.eval(_ENQUEUE_LUA, len(keys), *keys, *argv)  # type: ignore[misc,unused-ignore]
    except (RedisError, OSError) as exc:
        raise QueueUnavailable() from exc
    return int(added)


async def promote_due(redis: ArqRedis, *, limit: int = 1000) -> int:
    """Move scheduled jobs whose time has come onto their queues; returns how many moved."""
    moved = await redis.eval(_PROMOTE_LUA, 1, SCHEDULED_SET, str(_now_ms()), str(limit))  # type: ignore[misc,unused-ignore]
    return int(moved)


async def withdraw(redis: ArqRedis, deliveries: Sequence[Delivery]) -> None:
    """Take jobs that have not started off their queues and the scheduled set (one trip)."""
    if not deliveries:
        return
    keys, argv = [SCHEDULED_SET], []
    for delivery in deliveries:
        job_id = str(delivery.job_id)
        keys += [queue_key(delivery.queue), job_key(job_id)]
        argv += [job_id, delivery.scheduled_member()]
    await redis.eval(_WITHDRAW_LUA, len(keys), *keys, *argv)  # type: ignore[misc,unused-ignore]


async def request_abort(redis: ArqRedis, job_id: uuid.UUID) -> None:
    """Ask whichever worker runs the job to cancel it (ARQ's abort set, polled by workers)."""
    await redis.zadd(ABORT_SET, {str(job_id): _now_ms()})
