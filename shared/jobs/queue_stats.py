"""How many jobs wait on each queue and priority, read from ARQ's sorted sets in one round trip.

A due job's score is its fair start time plus its priority's offset (`shared.jobs.enqueue`), and
start times stay within `FAIR_SHARE_MAX_LEAD_MS` of now, so each priority owns one score range:
a priority's highest possible score is `now + lead + offset`, and the next priority's scores
all lie above it. `ZCOUNT` over those ranges counts each priority.

ARQ keeps a job on its queue until it ends, so the front of a line holds the jobs running now.
One script walks each line from its head, past the jobs holding ARQ's in-progress key, to the
first job waiting: its score gives the line's age (`now - (score - offset)`: how long it has
been due), and the running jobs passed are not counted as waiting. Workers take jobs from the
front, which is where running jobs are; one running further back (a job put back at its old
place) would count as waiting.

Jobs that must wait (delays, retries, quota deferrals) sit in the one scheduled set until due;
it has no per-queue index, so it is counted as a whole: those still waiting for their time and
those overdue (due, not yet moved onto their queue: a lasting count means no worker is running
the mover).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from arq.connections import ArqRedis

from shared.contracts import Priority
from shared.jobs.enqueue import FAIR_SHARE_MAX_LEAD_MS, PRIORITY_OFFSET_MS
from shared.keys import SCHEDULED_SET, in_progress_key, queue_key
from shared.redis import LuaScript

PRIORITIES: tuple[Priority, ...] = ("critical", "default", "low")
"""Most urgent first: the order their score ranges follow."""
HEAD_SCAN_LIMIT = 2000
"""Jobs looked at from the head of a line to find the first not running (see the module doc)."""
HEAD_SCAN_BATCH = 64

# KEYS: the queues, then the scheduled set. ARGV: now, ARQ's in-progress prefix, scan limit and
# batch, then (min, max) per priority. Per queue and priority it returns the jobs waiting and
# the score of the first one ('' if none); then the scheduled set's future and due counts.
_STATS_LUA = """
local now, prefix = ARGV[1], ARGV[2]
local limit, batch = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for q = 1, #KEYS - 1 do
    for p = 5, #ARGV, 2 do
        local low, high = ARGV[p], ARGV[p + 1]
        local total = redis.call('ZCOUNT', KEYS[q], low, high)
        local running, head, offset = 0, '', 0
        while head == '' and offset < math.min(total, limit) do
            local page = redis.call(
                'ZRANGEBYSCORE', KEYS[q], low, high, 'WITHSCORES', 'LIMIT', offset, batch)
            if #page == 0 then
                break
            end
            for i = 1, #page, 2 do
                if redis.call('EXISTS', prefix .. page[i]) == 1 then
                    running = running + 1
                else
                    head = page[i + 1]
                    break
                end
            end
            offset = offset + batch
        end
        table.insert(out, total - running)
        table.insert(out, head)
    end
end
table.insert(out, redis.call('ZCOUNT', KEYS[#KEYS], '(' .. now, '+inf'))
table.insert(out, redis.call('ZCOUNT', KEYS[#KEYS], '-inf', now))
return out
"""
_STATS = LuaScript(_STATS_LUA)


@dataclass(frozen=True)
class QueueDepth:
    """Jobs due on one queue at one priority, and how long the first in line has been due."""

    queue: str
    priority: Priority
    depth: int
    oldest_age_seconds: float | None
    """None when the line is empty."""


@dataclass(frozen=True)
class QueueStats:
    """Every queue's lines, and the scheduled set."""

    depths: list[QueueDepth]
    scheduled_waiting: int
    """Delayed jobs and retries whose time has not come."""
    scheduled_overdue: int
    """Jobs whose time has come but that are not on their queue yet."""


def _score_ranges(now_ms: int) -> list[tuple[Priority, str, str]]:
    """Each priority's (min, max] score range as Redis range arguments, most urgent first."""
    latest_start_ms = now_ms + FAIR_SHARE_MAX_LEAD_MS
    ranges: list[tuple[Priority, str, str]] = []
    low_end = "-inf"
    for priority in PRIORITIES[:-1]:
        high_end = str(latest_start_ms + PRIORITY_OFFSET_MS[priority])
        ranges.append((priority, low_end, high_end))
        low_end = f"({high_end}"
    # The least urgent range is open-ended: it also takes jobs enqueued by plain ARQ (no offset).
    ranges.append((PRIORITIES[-1], low_end, "+inf"))
    return ranges


async def read_queue_stats(redis: ArqRedis, queues: Sequence[str]) -> QueueStats:
    """Depth and head age of every (queue, priority), and the scheduled set's counts (one trip)."""
    now_ms = int(time.time() * 1000)
    ranges = _score_ranges(now_ms)
    argv = [str(now_ms), in_progress_key(""), str(HEAD_SCAN_LIMIT), str(HEAD_SCAN_BATCH)]
    for _priority, low, high in ranges:
        argv += [low, high]
    keys = [*(queue_key(queue) for queue in queues), SCHEDULED_SET]
    replies = await _STATS.run(redis, keys, argv)
    depths: list[QueueDepth] = []
    position = 0
    for queue in queues:
        for priority, _low, _high in ranges:
            waiting, head = int(replies[position]), replies[position + 1]
            position += 2
            age = None
            if head:
                started_ms = float(head) - PRIORITY_OFFSET_MS[priority]
                age = max(now_ms - started_ms, 0) / 1000
            depths.append(QueueDepth(queue, priority, waiting, age))
    return QueueStats(
        depths=depths,
        scheduled_waiting=int(replies[position]),
        scheduled_overdue=int(replies[position + 1]),
    )
