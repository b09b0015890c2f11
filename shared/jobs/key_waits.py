"""Jobs waiting for a slot of their concurrency key, in Redis: the layout, in one place.

A job that finds its key's slots all taken (`worker.key_limits`) leaves its queue and waits in
`jobgate:key-waiting:<scope>`, a sorted set scored by its place in line (its queue score) whose
members are `<queue key>|<job id>`, so whoever frees a slot can put the first in line back on
its queue. Two hashes go with the sets, kept in step by the same scripts:
`KEY_WAITING_INDEX` (scope -> `<limit>:<job type>`: which sets have waiters, for the
reconciler's sweep) and `KEY_WAITING_COUNTS` (job type -> waiting jobs, for the gateway's gauge).

Every script that takes a waiter out of a set does it with `UNPARK_LUA`, so the counts follow.
This module holds what the gateway needs too: forgetting jobs cancelled while they wait
(`forget_waiting`), and the counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from arq.connections import ArqRedis

from shared.jobs.enqueue import Delivery
from shared.keys import (
    KEY_WAITING_COUNTS,
    KEY_WAITING_INDEX,
    KEY_WAITING_PREFIX,
    concurrency_scope,
    queue_key,
)
from shared.redis import LuaScript

# `unpark(scope, member, job type)`: take a waiter out of its set (if there), counts and index
# kept in step. Key names are built here from their prefixes, as the take script builds its
# own: fine on one Redis server, which is what ARQ supports.
UNPARK_LUA = f"""
local function unpark(scope, member, job_type)
    local waiting = '{KEY_WAITING_PREFIX}' .. scope
    if redis.call('ZREM', waiting, member) == 0 then
        return false
    end
    if redis.call('HINCRBY', '{KEY_WAITING_COUNTS}', job_type, -1) <= 0 then
        redis.call('HDEL', '{KEY_WAITING_COUNTS}', job_type)
    end
    if redis.call('ZCARD', waiting) == 0 then
        redis.call('HDEL', '{KEY_WAITING_INDEX}', scope)
    end
    return true
end
"""

# ARGV: scope, member, job type for each job.
_FORGET = LuaScript(
    UNPARK_LUA
    + """
for i = 1, #ARGV, 3 do
    unpark(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
"""
)


def scope_of(delivery: Delivery) -> str:
    """The concurrency key's scope of a keyed job (tenant, type, key)."""
    if delivery.concurrency_key is None:
        raise ValueError("the job has no concurrency key")
    return concurrency_scope(str(delivery.tenant_id), delivery.name, delivery.concurrency_key)


def waiting_member(delivery: Delivery) -> str:
    """A waiting job's member of its key's set: where it goes back to, and which job it is."""
    return f"{queue_key(delivery.queue)}|{delivery.job_id}"


async def forget_waiting(redis: ArqRedis, deliveries: Sequence[Delivery]) -> None:
    """Take cancelled jobs out of the sets of their concurrency keys (one trip, if any is keyed).

    Their payloads are gone (`withdraw`), so a slot that frees would skip them anyway; this
    keeps the waiting counts true meanwhile.
    """
    argv = [
        part
        for delivery in deliveries
        if delivery.concurrency_key is not None
        for part in (scope_of(delivery), waiting_member(delivery), delivery.name)
    ]
    if argv:
        await _FORGET.run(redis, [], argv)


async def waiting_counts(redis: ArqRedis) -> dict[str, int]:
    """How many jobs of each type wait for a slot of their concurrency key."""
    counts: dict[bytes | str, bytes | str] = await redis.hgetall(KEY_WAITING_COUNTS)  # type: ignore[misc]
    return {_text(job_type): int(count) for job_type, count in counts.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
