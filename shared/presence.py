"""Which worker processes are alive, what they serve and what they are running, in Redis.

Every `jobgate worker` process announces itself every few seconds (`worker.announce`): one
JSON value per process under `jobgate:worker:<name>`, set with an expiry of a few intervals,
and its name in the `jobgate:workers` set. A process is alive while its value exists: Redis
expires it, so liveness needs no clock shared between hosts, and a killed process drops out
within one expiry. The set only lets readers find the values without a key scan; each
announcement prunes the names whose value has expired.

ARQ's own health key (`jobgate:worker-health:<queue>`) cannot say this: it is one key per
queue, overwritten by whichever worker of that queue wrote last, and rewritten only hourly.

Readers: the gateway's `/metrics` (workers alive, jobs in flight) and `jobgate inspect`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from arq.connections import ArqRedis

from shared.keys import WORKER_PRESENCE_PREFIX, WORKERS_SET, worker_presence_key
from shared.redis import LuaScript

MAX_RUNNING_IDS = 200
"""Job ids one announcement lists at most (enough for `jobgate inspect` to name the worker)."""

_ANNOUNCE_LUA = f"""
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', '{WORKER_PRESENCE_PREFIX}' .. name) == 0 then
        redis.call('SREM', KEYS[2], name)
    end
end
"""
_ANNOUNCE = LuaScript(_ANNOUNCE_LUA)

_ALIVE_LUA = f"""
local found = {{}}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local value = redis.call('GET', '{WORKER_PRESENCE_PREFIX}' .. name)
    if value then
        table.insert(found, value)
    end
end
return found
"""
_ALIVE = LuaScript(_ALIVE_LUA)


@dataclass(frozen=True)
class WorkerPresence:
    """One worker process as it last announced itself."""

    name: str
    """`host:pid`, as the `health_check` job reports it."""
    queues: list[str]
    in_flight: dict[str, int]
    """Jobs running now, per queue it serves."""
    running: list[str] = field(default_factory=list)
    """Ids of the jobs it runs (at most `MAX_RUNNING_IDS`)."""
    started: int = 0
    """Jobs it started since the process began."""
    finished: int = 0
    """Attempts it finished (any outcome) since the process began."""
    since: float = 0.0
    """When the process began (epoch seconds)."""
    announced_at: float = 0.0
    """When it wrote this (epoch seconds, its own clock)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkerPresence:
        data: dict[str, Any] = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})


async def announce(redis: ArqRedis, presence: WorkerPresence, *, ttl_seconds: float) -> None:
    """Say this worker is alive for `ttl_seconds` more, with what it serves and runs (one trip)."""
    await _ANNOUNCE.run(
        redis,
        [worker_presence_key(presence.name), WORKERS_SET],
        [presence.name, presence.to_json(), str(max(int(ttl_seconds * 1000), 1))],
    )


async def withdraw(redis: ArqRedis, name: str) -> None:
    """A stopping worker leaves the list at once rather than when its announcement expires."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(worker_presence_key(name))
        pipe.srem(WORKERS_SET, name)
        await pipe.execute()


async def alive_workers(redis: ArqRedis) -> list[WorkerPresence]:
    """Every worker process whose announcement has not expired, by name (one trip)."""
    values = await _ALIVE.run(redis, [WORKERS_SET])
    workers = [WorkerPresence.from_json(value) for value in values]
    return sorted(workers, key=lambda worker: worker.name)
