"""Hand jobs to ARQ: one Redis round trip for one job or a whole batch.

Priorities. ARQ takes the lowest scores first among those not in the future. A due job's
score is its fair start time (below) plus its priority's offset (critical -3·SPAN, default
-2·SPAN, low -SPAN), so any waiting critical job sorts before any default job, and those before
low ones. A start time runs at most `FAIR_SHARE_MAX_LEAD_MS` (a tenth of a SPAN) ahead of now,
so every due score stays in the past, as ARQ needs to start a job at all.

Fairness between tenants: start-time fair queuing with a virtual clock per tenant
(`jobgate:vclock:<tenant>`). A job starts at max(now, its tenant's clock) and moves that clock
on by `FAIR_SHARE_COST_MS`. A tenant that dumps 5,000 jobs spreads them over 5,000 virtual
seconds; another tenant's single job starts at now, behind only the few of them whose start
has come. Each tenant keeps first-in-first-out order within a priority.

Waiting jobs. A future score would mean "not yet" to ARQ, so jobs that must wait (delayed
submits, retries) go to one `scheduled` sorted set by due time; `promote_due` moves them to
their queue once due, charging their tenant's clock then (delaying jobs does not get around
fairness). A job a worker puts back (its tenant is at its concurrency quota) gets its former
score again when due: it keeps its place in line and is not charged twice.

ARQ's own `enqueue_job` costs four round trips (WATCH, EXISTS, MULTI/EXEC). The scripts here
do the same check-and-set atomically inside Redis: a job whose payload or result key exists
is left alone, which makes re-enqueueing the same job id (the reconciler does) harmless.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import RedisError

from shared.contracts import Priority
from shared.errors import QueueUnavailable
from shared.keys import (
    ABORT_SET,
    QUEUE_PREFIX,
    SCHEDULED_SET,
    VCLOCK_PREFIX,
    WAKE_PREFIX,
    job_key,
    queue_key,
)
from shared.redis import LuaScript, serialize_payload

PRIORITY_SPAN_MS = 10**12  # about 31 years: wider than any wait, so priorities never overlap
PRIORITY_OFFSET_MS: dict[Priority, int] = {
    "critical": -3 * PRIORITY_SPAN_MS,
    "default": -2 * PRIORITY_SPAN_MS,
    "low": -PRIORITY_SPAN_MS,
}
FAIR_SHARE_COST_MS = 1000
"""Virtual time one job costs its tenant. Only ratios matter between busy tenants (each gets an
equal share); against wall time it is how far ahead a tenant's backlog runs, so a newcomer
waits behind at most one job per second of that backlog's age, minus those already run."""
FAIR_SHARE_MAX_LEAD_MS = PRIORITY_SPAN_MS // 10
"""How far ahead of now a tenant's clock may run (~3 years): keeps every due score in the past."""

# The fair start of a tenant's next job (not before `start`), moving its clock on.
_FAIR_START_LUA = """
local function fair_start(tenant, start)
    local clock = ARGV[4] .. tenant
    local ahead = tonumber(redis.call('GET', clock) or '0')
    start = math.min(math.max(start, ahead), now + tonumber(ARGV[3]))
    local next_start = start + tonumber(ARGV[2])
    local ttl = math.max(next_start - now, 0) + 60000
    redis.call('SET', clock, string.format('%d', next_start), 'PX', string.format('%d', ttl))
    return start
end
"""

# One wake token per job made due, so idle workers (worker.loop) start it at once; capped,
# and short-lived, since a token nobody takes only costs a worker one extra poll.
WAKE_LUA = f"""
local woken = {{}}
local function note_due(queue)
    woken[queue] = (woken[queue] or 0) + 1
end
local function wake_workers()
    for queue, count in pairs(woken) do
        local wake = '{WAKE_PREFIX}' .. string.sub(queue, {len(QUEUE_PREFIX) + 1})
        for _ = 1, math.min(count, 64) do
            redis.call('LPUSH', wake, '1')
        end
        redis.call('LTRIM', wake, 0, 255)
        redis.call('PEXPIRE', wake, 60000)
    end
end
"""

# KEYS[1]: the scheduled set. ARGV: now, the fair-share cost and lead, the clocks' prefix, ARQ's
# job and result key prefixes, and the jobs as one JSON array of [queue key, id, due ms, score
# offset, payload ttl ms, payload, scheduled-set member, tenant ('': charge no clock)]. A job
# whose payload or result exists is left alone. Job and result key names are built here from
# ARQ's prefixes, as the worker's take builds them: fine on one Redis server, which is what
# ARQ supports.
_ENQUEUE_LUA = (
    "local now = tonumber(ARGV[1])\n"
    + _FAIR_START_LUA
    + WAKE_LUA
    + """
local added = 0
for _, fields in ipairs(cjson.decode(ARGV[7])) do
    local queue, id, due, offset, ttl, payload, member, tenant = unpack(fields)
    local job = ARGV[5] .. id
    if redis.call('EXISTS', job, ARGV[6] .. id) == 0 then
        redis.call('PSETEX', job, ttl, payload)
        if due > now then
            redis.call('ZADD', KEYS[1], due, member)
        elseif tenant == '' then
            redis.call('ZADD', queue, due + offset, id)
            note_due(queue)
        else
            redis.call('ZADD', queue, fair_start(tenant, now) + offset, id)
            note_due(queue)
        end
        added = added + 1
    end
end
wake_workers()
return added
"""
)

# Members are `queue|offset|id|tenant` (charge the tenant's clock) or `queue|offset|id` (a job
# put back at its former score: offset = that score - due time).
_PROMOTE_LUA = (
    "local now = tonumber(ARGV[1])\n"
    + _FAIR_START_LUA
    + WAKE_LUA
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[5])
for i = 1, #due, 2 do
    local at = tonumber(due[i + 1])
    local queue, offset, id, tenant = string.match(due[i], '^(.-)|(-?%d+)|([^|]+)|([^|]+)$')
    local score
    if queue then
        score = fair_start(tenant, at) + tonumber(offset)
    else
        queue, offset, id = string.match(due[i], '^(.*)|(-?%d+)|([^|]+)$')
        score = at + tonumber(offset)
    end
    redis.call('ZADD', queue, score, id)
    redis.call('ZREM', KEYS[1], due[i])
    note_due(queue)
end
wake_workers()
return #due / 2
"""
)

_WITHDRAW_LUA = """
for i = 0, (#KEYS - 1) / 2 - 1 do
    local queue, job = KEYS[2 + i * 2], KEYS[3 + i * 2]
    redis.call('ZREM', queue, ARGV[1 + i * 2])
    redis.call('ZREM', KEYS[1], ARGV[2 + i * 2])
    redis.call('DEL', job)
end
"""
_ENQUEUE, _PROMOTE, _WITHDRAW = (
    LuaScript(_ENQUEUE_LUA),
    LuaScript(_PROMOTE_LUA),
    LuaScript(_WITHDRAW_LUA),
)


@dataclass(frozen=True)
class Delivery:
    """What ARQ needs to run a job: which function, on which queue, how urgent, from when."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    queue: str
    priority: Priority = "default"
    run_at: datetime | None = None
    score_ms: int | None = None
    """Set when a worker puts a job back: its former queue score, restored as is once due."""
    concurrency_key: str | None = None
    """The job's concurrency key (`ConcurrencyLimit`), carried in its payload to the worker."""

    def due_ms(self, now_ms: int) -> int:
        """When the job may start (epoch ms)."""
        return int(self.run_at.timestamp() * 1000) if self.run_at else now_ms

    def placement(self, now_ms: int) -> tuple[int, str]:
        """The score offset added to the start time, and whose clock it charges ('': none)."""
        if self.score_ms is not None:
            return self.score_ms - self.due_ms(now_ms), ""
        return PRIORITY_OFFSET_MS[self.priority], str(self.tenant_id)

    def scheduled_member(self, now_ms: int | None = None) -> str:
        """This job's entry in the scheduled set (see `_PROMOTE_LUA`)."""
        offset, tenant = self.placement(_now_ms() if now_ms is None else now_ms)
        member = f"{queue_key(self.queue)}|{offset}|{self.job_id}"
        return f"{member}|{tenant}" if tenant else member


def _now_ms() -> int:
    return int(time.time() * 1000)


def payload_of(delivery: Delivery, now_ms: int) -> str:
    """ARQ's job payload; it carries only identity (and the concurrency key the worker admits
    the job by, before it has read the row), the worker reads args from PostgreSQL."""
    kwargs = {"tenant_id": str(delivery.tenant_id)}
    if delivery.concurrency_key is not None:
        kwargs["concurrency_key"] = delivery.concurrency_key
    return serialize_job(
        delivery.name,
        (),
        kwargs,
        None,
        now_ms,
        serializer=serialize_payload,
    ).decode()


async def enqueue(redis: ArqRedis, deliveries: Sequence[Delivery]) -> int:
    """Put jobs on their queues (or the scheduled set); returns how many were new."""
    if not deliveries:
        return 0
    now_ms = _now_ms()
    jobs: list[list[str | int]] = []
    # A batch's jobs share their payload (type, tenant and key): serialised once.
    payloads: dict[tuple[str, uuid.UUID, str | None], str] = {}
    for delivery in deliveries:
        due_ms = delivery.due_ms(now_ms)
        # ARQ expires a payload a day after its due time; the reconciler restores lost ones.
        ttl_ms = max(due_ms - now_ms, 0) + expires_extra_ms
        shared_by = (delivery.name, delivery.tenant_id, delivery.concurrency_key)
        payload = payloads.get(shared_by)
        if payload is None:
            payload = payloads[shared_by] = payload_of(delivery, now_ms)
        offset, tenant = delivery.placement(now_ms)
        # Only a job that must wait goes to the scheduled set.
        member = delivery.scheduled_member(now_ms) if due_ms > now_ms else ""
        queue = queue_key(delivery.queue)
        jobs.append([queue, str(delivery.job_id), due_ms, offset, ttl_ms, payload, member, tenant])
    # The jobs go as one JSON argument, not seven each: redis-py packs a command argument by
    # argument in Python, which for a batch costs far more than one `json.dumps`.
    argv = [
        str(now_ms),
        str(FAIR_SHARE_COST_MS),
        str(FAIR_SHARE_MAX_LEAD_MS),
        VCLOCK_PREFIX,
        job_key_prefix,
        result_key_prefix,
        json.dumps(jobs),
    ]
    try:
        added = await _ENQUEUE.run(redis, [SCHEDULED_SET], argv)
    except (RedisError, OSError) as exc:
        raise QueueUnavailable() from exc
    return int(added)


async def promote_due(redis: ArqRedis, *, limit: int = 1000) -> int:
    """Move scheduled jobs whose time has come onto their queues; returns how many moved."""
    moved = await _PROMOTE.run(
        redis,
        [SCHEDULED_SET],
        [
            str(_now_ms()),
            str(FAIR_SHARE_COST_MS),
            str(FAIR_SHARE_MAX_LEAD_MS),
            VCLOCK_PREFIX,
            str(limit),
        ],
    )
    return int(moved)


async def next_due_ms(redis: ArqRedis) -> int | None:
    """When the first job of the scheduled set is due (epoch ms); None if none waits."""
    first = await redis.zrange(SCHEDULED_SET, 0, 0, withscores=True)
    return int(first[0][1]) if first else None


async def withdraw(redis: ArqRedis, deliveries: Sequence[Delivery]) -> None:
    """Take jobs that have not started off their queues and the scheduled set (one trip)."""
    if not deliveries:
        return
    keys, argv = [SCHEDULED_SET], []
    for delivery in deliveries:
        job_id = str(delivery.job_id)
        keys += [queue_key(delivery.queue), job_key(job_id)]
        argv += [job_id, delivery.scheduled_member()]
    await _WITHDRAW.run(redis, keys, argv)


async def request_abort(redis: ArqRedis, job_id: uuid.UUID) -> None:
    """Ask whichever worker runs the job to cancel it (ARQ's abort set, polled by workers)."""
    await redis.zadd(ABORT_SET, {str(job_id): _now_ms()})
