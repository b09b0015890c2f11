"""The take script: one Redis call takes a poll's due jobs, each with a short lease.

It reads the due ids of a queue, skips those in progress (here or on another worker), reads
the payloads of the others and marks them in progress for the lease's length. `worker.loop`
runs it on every poll and right after each wait for a wake token.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from shared.redis import LuaScript

# Take up to ARGV[3] due jobs of queue KEYS[1], reading at most ARGV[4] ids: skip those in
# progress (here or elsewhere), mark the others in progress for ARGV[2] ms and return
# id, score, payload for each. An id whose payload expired is dropped, as ARQ drops it (its row
# is re-enqueued by the reconciler). Key names are built here from ARQ's prefixes (ARGV[5],
# ARGV[6]): fine on one Redis server, which is what ARQ supports. Nothing is taken while the
# queue (ARGV[7]) is in the paused hash KEYS[2] (`shared.jobs.queue_pauses`).
_TAKE_DUE_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[7]) == 1 then
    return {}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[4])
local wanted = tonumber(ARGV[3])
local taken = {}
for i = 1, #due, 2 do
    if #taken >= wanted * 3 then
        break
    end
    local id = due[i]
    local progress = ARGV[5] .. id
    if redis.call('EXISTS', progress) == 0 then
        local payload = redis.call('GET', ARGV[6] .. id)
        if payload then
            redis.call('PSETEX', progress, ARGV[2], '1')
            taken[#taken + 1] = id
            taken[#taken + 1] = due[i + 1]
            taken[#taken + 1] = payload
        else
            redis.call('ZREM', KEYS[1], id)
        end
    end
end
return taken
"""
TAKE_DUE = LuaScript(_TAKE_DUE_LUA)

Deserializer = Callable[[bytes], dict[str, Any]]


@dataclass(frozen=True)
class Taken:
    """A job this worker took from its queue (its in-progress key is set)."""

    job_id: str
    score: int
    tenant_id: str | None
    """Its tenant; None if it is not a job this worker can run (someone else's ARQ job: an
    unknown function, ids that are not UUIDs, a payload that is not JSON)."""
    name: str | None = None
    """Its job type (ARQ's function name), when `tenant_id` is known."""
    concurrency_key: str | None = None
    """The key its type's concurrency limit counts it under, if any (`worker.key_limits`)."""


def taken_of(
    reply: list[bytes], *, deserializer: Deserializer | None, functions: Collection[str]
) -> list[Taken]:
    """The jobs in a reply of the take script (id, score, payload for each)."""
    return [
        _taken(reply[i].decode(), reply[i + 1], reply[i + 2], deserializer, functions)
        for i in range(0, len(reply), 3)
    ]


def _taken(
    job_id: str,
    score: bytes,
    payload: bytes,
    deserializer: Deserializer | None,
    functions: Collection[str],
) -> Taken:
    tenant_id = name = key = None
    try:
        job = deserializer(payload) if deserializer else {}
        uuid.UUID(job_id)
        if job["f"] in functions:
            tenant_id = str(uuid.UUID(job["k"]["tenant_id"]))
            name = str(job["f"])
            key = job["k"].get("concurrency_key")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass  # not one of jobgate's: the loop reports and drops it
    return Taken(job_id, int(float(score)), tenant_id, name, key if isinstance(key, str) else None)
