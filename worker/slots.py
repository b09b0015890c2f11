"""Slots with leases: at most `limit` jobs holding one of a set's slots at once, over all workers.

A set of slots is a sorted set of the job ids holding one (scored by when they took it): a
tenant's concurrency quota (`worker.quota`), a concurrency key (`worker.key_limits`). Taking a
slot is one script: first drop holders whose ARQ in-progress key is gone (their attempt ended,
or their worker died and the lease lapsed: see `worker.lease`), then add the job if there is
room. A crashed worker's slots therefore free themselves within one lease; a finished attempt
gives its slot back at once.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from shared.keys import in_progress_key
from shared.redis import LuaScript

# `drop_lapsed(slots, keep)`: drop the holders of `slots` whose lease is gone, but `keep`
# (members are job ids; their in-progress key is ARQ's, named here as the take script names it).
DROP_LAPSED_LUA = f"""
local function drop_lapsed(slots, keep)
    for _, member in ipairs(redis.call('ZRANGE', slots, 0, -1)) do
        if member ~= keep and redis.call('EXISTS', '{in_progress_key("")}' .. member) == 0 then
            redis.call('ZREM', slots, member)
        end
    end
end
"""

_TAKE_SLOT = LuaScript(
    DROP_LAPSED_LUA
    + """
local limit, id = tonumber(ARGV[1]), ARGV[2]
drop_lapsed(KEYS[1], id)
if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], redis.call('TIME')[1], id)
    return 1
end
return 0
"""
)


async def take_slot(redis: ArqRedis, slots: str, *, job_id: str, limit: int) -> bool:
    """Hold one of the `limit` slots of `slots` for this job (again, if it already holds one)."""
    taken = await _TAKE_SLOT.run(redis, [slots], [str(limit), job_id])
    return bool(int(taken))


async def give_back_slot(redis: ArqRedis, slots: str, *, job_id: str) -> None:
    """The job's attempt is over: free its slot."""
    await redis.zrem(slots, job_id)
