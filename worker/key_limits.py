"""Concurrency keys in the workers: at most `limit` jobs of a key run at once, the others wait.

The admission step after the tenant's quota (`worker.admission.admit`): a job whose type
declares a `ConcurrencyLimit` and whose payload carries a key takes one of the key's slots
(`worker.slots`, scoped by tenant, type and key: `jobgate:key-running:<scope>`). A job that
finds none free is not claimed (no attempt counted, its row still waiting); once it has left
Redis like any ended run, `after_attempt` parks it in its key's waiting set
(`shared.jobs.key_waits`) at its place in line, off its queue: jobs of other keys behind it
start meanwhile, and nothing polls for it.

Whoever frees a slot wakes the next in line: a run giving its slot back moves the first
waiters, as many as there are free slots, back onto their queue at their former score, and
pushes wake tokens for idle workers. Parking checks for a free slot in the same script, so a
slot freed while the job was on its way to the waiting set is not missed. A slot whose run
never gave it back (its worker killed, Redis unreachable at that moment) frees itself with the
run's lease; the reconciler's pass then wakes that key's waiters (`wake_stranded`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from shared.jobs.enqueue import WAKE_LUA, Delivery, payload_of
from shared.jobs.key_waits import UNPARK_LUA, waiting_member
from shared.keys import (
    KEY_RUNNING_PREFIX,
    KEY_WAITING_COUNTS,
    KEY_WAITING_INDEX,
    KEY_WAITING_PREFIX,
    concurrency_scope,
    job_key,
    key_running_key,
)
from shared.redis import LuaScript
from worker.context import JobRunContext, WorkerContext
from worker.metrics import KEY_WAITS
from worker.put_back import put_back
from worker.slots import DROP_LAPSED_LUA, take_slot
from worker.take import Taken

log = structlog.get_logger("jobgate.worker")

# `release_waiters(scope, limit, job type)`: while the key has free slots, move the first in
# line back onto its queue at its score (skipping those whose payload is gone: cancelled or
# expired meanwhile). Then `wake_workers()` pushes the wake tokens.
_RELEASE_WAITERS_LUA = f"""
local function release_waiters(scope, limit, job_type)
    local holders = '{KEY_RUNNING_PREFIX}' .. scope
    local waiting = '{KEY_WAITING_PREFIX}' .. scope
    drop_lapsed(holders, '')
    local free = limit - redis.call('ZCARD', holders)
    local moved = 0
    while free > 0 do
        local head = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
        if #head == 0 then
            break
        end
        unpark(scope, head[1], job_type)
        local queue, id = string.match(head[1], '^(.*)|([^|]+)$')
        if redis.call('EXISTS', '{job_key_prefix}' .. id) == 1 then
            redis.call('ZADD', queue, head[2], id)
            note_due(queue)
            free = free - 1
            moved = moved + 1
        end
    end
    return moved
end
"""
_LIBRARY = WAKE_LUA + DROP_LAPSED_LUA + UNPARK_LUA + _RELEASE_WAITERS_LUA

# ARGV: scope, limit, job type, the job giving its slot back.
_GIVE_BACK = LuaScript(
    _LIBRARY
    + f"""
redis.call('ZREM', '{KEY_RUNNING_PREFIX}' .. ARGV[1], ARGV[4])
local moved = release_waiters(ARGV[1], tonumber(ARGV[2]), ARGV[3])
wake_workers()
return moved
"""
)

# ARGV: scope, limit, job type, member, score, the job's payload key, payload, its ttl (ms).
_PARK = LuaScript(
    _LIBRARY
    + f"""
redis.call('PSETEX', ARGV[6], ARGV[8], ARGV[7])
if redis.call('ZADD', '{KEY_WAITING_PREFIX}' .. ARGV[1], ARGV[5], ARGV[4]) == 1 then
    redis.call('HINCRBY', '{KEY_WAITING_COUNTS}', ARGV[3], 1)
end
redis.call('HSET', '{KEY_WAITING_INDEX}', ARGV[1], ARGV[2] .. ':' .. ARGV[3])
local moved = release_waiters(ARGV[1], tonumber(ARGV[2]), ARGV[3])
wake_workers()
return moved
"""
)

# ARGV: scopes listed in the index; each is woken as if one of its slots had just been freed.
_WAKE_STRANDED = LuaScript(
    _LIBRARY
    + f"""
local moved = 0
for _, scope in ipairs(ARGV) do
    local entry = redis.call('HGET', '{KEY_WAITING_INDEX}', scope)
    if entry then
        local limit, job_type = string.match(entry, '^(%d+):(.*)$')
        moved = moved + release_waiters(scope, tonumber(limit), job_type)
    end
end
wake_workers()
return moved
"""
)
_SWEEP_BATCH = 500


@dataclass(frozen=True)
class KeySlot:
    """A concurrency key as the workers count it: its scope, its limit, its job type."""

    scope: str
    limit: int
    job_type: str


@dataclass(frozen=True)
class KeyWait:
    """A job turned away by its key: which key, how it goes back onto its queue, and where in
    line (the score it was taken with)."""

    key: KeySlot
    delivery: Delivery
    score: int


def key_slot_of(ctx: WorkerContext, taken: Taken) -> KeySlot | None:
    """The key a taken job counts under, if its type declares a concurrency limit."""
    if taken.concurrency_key is None or taken.name is None or taken.tenant_id is None:
        return None
    binding = ctx["bindings"].get(taken.name)
    limit = None if binding is None else binding.job_type.concurrency
    if limit is None:
        return None
    scope = concurrency_scope(taken.tenant_id, taken.name, taken.concurrency_key)
    return KeySlot(scope, limit.limit, taken.name)


async def admit_by_key(ctx: JobRunContext, tenant_id: uuid.UUID) -> bool:
    """Take a slot of the job's concurrency key; if none is free, the job waits for one.

    Before the claim, so a waiting job keeps its row (attempts unchanged). The slot is given
    back by `after_attempt`, or frees itself once the lease lapses (see `worker.slots`).
    """
    key = key_slot_of(ctx, ctx["taken"])
    if key is None:
        return True
    job_id = ctx["job_id"]
    if await take_slot(ctx["redis"], key_running_key(key.scope), job_id=job_id, limit=key.limit):
        ctx["key_slot"] = key
        return True
    # Its place in line is kept (the score it was taken with); when it goes back is up to
    # whoever frees a slot, so the delay is only a formality of `put_back`'s.
    delivery = await put_back(ctx, tenant_id, delay=timedelta(0), score=ctx["score"])
    if delivery is not None:
        ctx["key_wait"] = KeyWait(key, delivery, ctx["score"])
        KEY_WAITS.labels(key.job_type).inc()
        log.info("job.waiting", reason="its concurrency key is at its limit")
    return False


async def after_attempt(ctx: JobRunContext) -> None:
    """Once the job has ended in Redis: give its key's slot back, or park it to wait for one."""
    held, wait = ctx.pop("key_slot", None), ctx.pop("key_wait", None)
    try:
        if held is not None:
            await _GIVE_BACK.run(
                ctx["redis"], [], [held.scope, str(held.limit), held.job_type, ctx["job_id"]]
            )
        if wait is not None:
            await _park(ctx["redis"], wait)
    except (RedisError, OSError) as exc:
        # A slot not given back lapses with the lease, and the reconciler wakes its waiters;
        # a job not parked has no payload, and the reconciler enqueues it again.
        log.warning("concurrency_key.redis_failed", error=type(exc).__name__)


async def _park(redis: ArqRedis, wait: KeyWait) -> None:
    delivery, key = wait.delivery, wait.key
    await _PARK.run(
        redis,
        [],
        [
            key.scope,
            str(key.limit),
            key.job_type,
            waiting_member(delivery),
            str(wait.score),
            job_key(str(delivery.job_id)),
            payload_of(delivery, timestamp_ms()),
            str(expires_extra_ms),  # as long as ARQ keeps any due job's payload
        ],
    )


async def wake_stranded(redis: ArqRedis) -> int:
    """Wake the waiters of keys with free slots that nobody gave back; how many went back.

    Run by the reconciler's pass: one script call per `_SWEEP_BATCH` keys with waiters.
    """
    moved, cursor = 0, 0
    while True:
        cursor, entries = await redis.hscan(KEY_WAITING_INDEX, cursor, count=_SWEEP_BATCH)
        if entries:
            moved += int(await _WAKE_STRANDED.run(redis, [], list(entries)))
        if cursor == 0:
            return moved
