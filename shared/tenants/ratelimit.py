"""Per-tenant submit rate limits: one token bucket per tenant, kept in Redis.

A bucket holds up to `burst` tokens and refills at `per_second`. Every job a tenant creates
takes one token: a submit one, a batch one per job, a re-run one, a workflow one per step it
starts or re-runs, a dashboard bulk re-run one per job of its group (the operator's re-runs,
from the dashboard or `jobgate dlq retry`, are repairs and not charged). Tokens are taken in one
atomic script (so every gateway process shares the bucket, and the clock is Redis's own). A
batch larger than the whole bucket is let through only when the bucket is full, and leaves it
in debt: the long-run rate holds, and no batch is refused forever.

The check runs before anything is stored, and only for tenants that have a limit: without one
a submit makes no extra Redis round trip.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.errors import QueueUnavailable, RateLimited
from shared.keys import rate_limit_key
from shared.redis import LuaScript
from shared.settings import Settings
from shared.tenants.tenancy import TenantLimits

_TAKE_LUA = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then
    tokens, at = burst, now
end
tokens = math.min(burst, tokens + math.max(now - at, 0) * rate / 1000)
local taken = 0
if tokens >= math.min(cost, burst) then
    tokens = tokens - cost
    taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {taken, tostring(tokens)}
"""
_TAKE = LuaScript(_TAKE_LUA)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket's shape: refill rate and size."""

    per_second: float
    burst: int


def rate_limit_for(limits: TenantLimits, settings: Settings) -> RateLimit | None:
    """The tenant's own limit, else the configured default; None: not limited."""
    per_second = limits.rate_limit_per_second or settings.rate_limit_per_second
    if per_second is None:
        return None
    burst = limits.rate_limit_burst or settings.rate_limit_burst or max(1, math.ceil(per_second))
    return RateLimit(per_second=per_second, burst=burst)


@dataclass(frozen=True)
class RateState:
    """What the `RateLimit-*` headers tell a caller after a submit was let through."""

    limit: int
    remaining: int
    reset_seconds: int
    """Until the bucket is full again."""


def _seconds(tokens: float, rate: RateLimit) -> int:
    """Whole seconds (rounded up) for the bucket to refill `tokens`."""
    return max(math.ceil(tokens / rate.per_second - 1e-9), 0)


async def take_tokens(
    redis: ArqRedis, *, tenant_id: uuid.UUID, rate: RateLimit, cost: int
) -> RateState:
    """Take `cost` tokens from the tenant's bucket, or raise `RateLimited` taking none."""
    try:
        taken, left = await _TAKE.run(
            redis,
            [rate_limit_key(str(tenant_id))],
            [repr(rate.per_second), str(rate.burst), str(cost)],
        )
    except (RedisError, OSError) as exc:
        raise QueueUnavailable() from exc
    tokens = float(left)
    state = RateState(
        limit=rate.burst,
        remaining=max(math.floor(tokens), 0),
        reset_seconds=_seconds(rate.burst - tokens, rate),
    )
    if int(taken):
        return state
    retry_after = max(_seconds(min(cost, rate.burst) - tokens, rate), 1)
    raise RateLimited(
        f"This tenant may submit {rate.per_second:g} jobs per second (bursts of {rate.burst});"
        f" this request needs {cost}. Retry in {retry_after} s.",
        limit=state.limit,
        remaining=state.remaining,
        reset_seconds=state.reset_seconds,
        retry_after_seconds=retry_after,
    )


async def charge(
    redis: ArqRedis, *, tenant_id: uuid.UUID, rate: RateLimit | None, cost: int
) -> RateState | None:
    """`take_tokens` for a tenant that has a limit; None (and no Redis trip) for one without."""
    if rate is None:
        return None
    return await take_tokens(redis, tenant_id=tenant_id, rate=rate, cost=cost)
