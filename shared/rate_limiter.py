"""Rate limits per job type: at most `count` starts per `per_seconds`, over every worker.

A job type declares one (`JobType(..., rate_limit=RateLimit(count=100, per_seconds=60))`) and
the workers ask `take_start` before a job of that type starts (`worker.rate_limits`). A limit
without `key` is one schedule for the type, shared by every tenant: it protects what the jobs
call (a partner API allows so many calls a minute, whoever's jobs make them); sharing workers
fairly between tenants is the tenant quota's job. A limit with `key` (a dotted path into the
Args) has a schedule per tenant and key value; a job whose args lack the key is not limited.

The limiter is GCRA (the generic cell rate algorithm) in one Redis script, on Redis's clock
(`TIME`), so every worker and process follows one schedule whatever their own clocks say.
Starts are spaced `per_seconds / count` apart (the interval); `burst` lets that many more start
at once after a quiet spell. Any `per_seconds` window thus holds at most `count + burst` starts.
Its state is one number per schedule: the next free start (the "theoretical arrival time").

Bookings. A job that finds no free start books the next one (the schedule moves on as if it
had started) and waits until then. Each waiting job so comes back once, at its own start, and
starts without asking again; without bookings every waiting job would be told the same next
free start, and all would come back for each one that only one of them gets. A job that comes
back more than `grace_seconds` after its start (its queue was paused, every worker was busy)
has lost it and books a new one, so jobs held up meanwhile do not start together in a burst
the limit never allowed. A booked start that nobody uses (the job was cancelled) is lost: the
limit errs on the side of fewer starts.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from shared.arg_paths import check_path, value_at
from shared.keys import job_rate_booking_key, job_rate_key
from shared.redis import LuaScript

_MICROSECONDS = 1_000_000
GRACE_FRACTION = 0.1
"""A booked start is kept this share of `per_seconds` (at least one interval) after its time:
enough for a worker to pick the job up, little enough that late jobs starting together add at
most a tenth of `count` to a window."""

# KEYS[1]: the schedule's next free start; KEYS[2]: this job's booked start (both µs, Redis
# time). ARGV: interval, burst tolerance (burst * interval) and grace, in µs. Returns 0 (start
# now) or the µs until the job's booked start. A booking lives until its grace is over; the
# schedule until its next free start has passed (then it equals a fresh one).
_TAKE_START_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval, tolerance, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local booked = redis.call('GET', KEYS[2])
if booked then
    booked = tonumber(booked)
    if now < booked then
        return booked - now
    end
    redis.call('DEL', KEYS[2])
    if now <= booked + grace then
        return 0
    end
end
local free = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local start = math.max(free - tolerance, now)
local ttl_ms = math.ceil((free + interval - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', free + interval), 'PX', string.format('%d', ttl_ms))
if start > now then
    local booking_ms = math.ceil((start - now + grace) / 1000) + 1000
    redis.call('SET', KEYS[2], string.format('%d', start), 'PX', string.format('%d', booking_ms))
end
return start - now
"""
_TAKE_START = LuaScript(_TAKE_START_LUA)


@dataclass(frozen=True)
class RateLimit:
    """At most `count` starts of a job type per `per_seconds`, spaced evenly, over all workers.

    `burst`: how many more may start at once after a quiet spell (any `per_seconds` window
    then holds at most `count + burst`). `key`: a dotted path into the Args; the limit then
    holds per tenant and value of that field instead of once for the type.
    """

    count: int
    per_seconds: float
    key: str | None = None
    burst: int = 0

    def __post_init__(self) -> None:
        # A wrong limit is a programming error: fail at import, not at the first start.
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"rate limit count must be a whole number >= 1, not {self.count!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 0:
            raise ValueError(f"rate limit burst must be a whole number >= 0, not {self.burst!r}")
        if (
            isinstance(self.per_seconds, bool)
            or not isinstance(self.per_seconds, int | float)
            or not math.isfinite(self.per_seconds)
            or self.per_seconds <= 0
        ):
            raise ValueError(f"rate limit per_seconds must be > 0, not {self.per_seconds!r}")
        if self.interval_us < 1:
            raise ValueError("rate limit too high: at most one start per microsecond")
        if self.key is not None and not self.key:
            raise ValueError("rate limit key must name a field of the Args (or be None)")

    @property
    def interval_us(self) -> int:
        """Time between two starts, in microseconds."""
        return round(self.per_seconds * _MICROSECONDS / self.count)

    @property
    def grace_us(self) -> int:
        """How late a job may come back to its booked start and still have it."""
        return max(self.interval_us, round(self.per_seconds * _MICROSECONDS * GRACE_FRACTION))

    def check(self, args: type[BaseModel]) -> None:
        """Refuse a `key` that is not a plain field of the job type's `args` (at declaration)."""
        if self.key is not None:
            check_path(args, self.key)

    def describe(self) -> str:
        """The limit in words, as the dashboard and `jobgate inspect` show it."""
        text = f"{self.count} per {self.per_seconds:g} s"
        if self.burst:
            text += f", burst {self.burst}"
        if self.key is not None:
            text += f", per tenant and {self.key}"
        return text


def schedule_key(
    job_type: str, limit: RateLimit, *, tenant_id: uuid.UUID, args: Mapping[str, Any] | None
) -> str | None:
    """The Redis key of the schedule a job follows; None when it is not limited (a keyed limit
    and args without the key). `args` (the job's, as stored) are only read for a keyed limit."""
    if limit.key is None:
        return job_rate_key(job_type)
    value = value_at(args or {}, limit.key)
    if value is None:
        return None
    # Hashed: a key value may be long text; tenant and type keep equal values apart.
    scope = hashlib.sha256(f"{job_type}\0{tenant_id}\0{value}".encode()).hexdigest()
    return job_rate_key(job_type, scope=scope)


async def take_start(redis: Redis, limit: RateLimit, *, schedule: str, job_id: str) -> timedelta:
    """Take a free start of `schedule` for the job (zero: start now), else book the next one:
    the time until it. A job that comes back at its booked start gets zero."""
    wait_us = await _TAKE_START.run(
        redis,
        [schedule, job_rate_booking_key(job_id)],
        [str(limit.interval_us), str(limit.burst * limit.interval_us), str(limit.grace_us)],
    )
    # Rounded up to the millisecond that delays and the scheduled set count in, so the job
    # is never back a moment before its start.
    return timedelta(milliseconds=math.ceil(int(wait_us) / 1000))


async def next_free_start(redis: Redis, job_type: str, limit: RateLimit) -> timedelta:
    """How long until a new job of the type could start under its limit (one without a key;
    zero: now). It grows with the starts booked by jobs waiting their turn."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.get(job_rate_key(job_type))
        clock, free = await pipe.execute()
    if free is None:
        return timedelta(0)
    now_us = int(clock[0]) * _MICROSECONDS + int(clock[1])
    wait_us = int(free) - limit.burst * limit.interval_us - now_us
    return timedelta(microseconds=max(wait_us, 0))
