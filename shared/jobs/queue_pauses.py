"""Pausing a queue: workers start none of its jobs until it is resumed; submits still queue.

PostgreSQL's `queue_pause` table says which queues are paused. Workers do not read it on their
pickup path: their take script (`worker.take`) returns nothing for a queue named in the Redis
hash `jobgate:paused-queues`, so a pause costs pickup no round trip, and reaches every worker
at its next take. Pause and resume commit the row first and write the hash after (as a submit
commits, then enqueues); a resume also wakes idle workers, so waiting jobs start at once, in
their usual order (the queue's scores: priority, then fair share).

The reconciler rewrites the hash from the table on every pass (`mirror_pauses`), before it
re-enqueues lost jobs, so a Redis flush or restart un-pauses nothing once it has run (a worker
starting runs a pass at once). Until then, only jobs submitted after the flush could start.
The rewrite holds a SHARE lock on the table, which a pause or resume (INSERT, DELETE) waits
for: a pass never writes a state that a concurrent pause or resume has already replaced.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import Priority
from shared.errors import QueueNotFound
from shared.jobs.queue_stats import PRIORITIES, read_queue_stats
from shared.keys import PAUSED_QUEUES, queue_key, wake_key
from shared.models import QueuePause
from shared.presence import alive_workers
from shared.redis import LuaScript

log = structlog.get_logger("jobgate.queues")

MAX_WAKE_TOKENS = 64
"""Tokens a resume pushes at most: one per waiting job, as the enqueue script does."""

# KEYS: the paused hash, the queue, its wake list. ARGV: the queue's name, the token cap.
_RESUME_LUA = """
redis.call('HDEL', KEYS[1], ARGV[1])
local waiting = math.min(redis.call('ZCARD', KEYS[2]), tonumber(ARGV[2]))
for _ = 1, waiting do
    redis.call('LPUSH', KEYS[3], '1')
end
if waiting > 0 then
    redis.call('LTRIM', KEYS[3], 0, 255)
    redis.call('PEXPIRE', KEYS[3], 60000)
end
return waiting
"""
_RESUME = LuaScript(_RESUME_LUA)


def require_known(queue: str, known: Collection[str]) -> None:
    """`QueueNotFound` unless some job type runs on `queue` (`Registry.queues()`)."""
    if queue not in known:
        raise QueueNotFound(f"No job type runs on a queue named {queue!r}.")


async def pause_queue(
    session: AsyncSession, redis: ArqRedis, *, queue: str, paused_by: str, reason: str | None
) -> QueuePause:
    """Pause `queue` (commits); an already paused queue keeps its first pause, as it is."""
    await session.execute(
        insert(QueuePause)
        .values(queue=queue, paused_by=paused_by, reason=reason)
        .on_conflict_do_nothing(index_elements=[QueuePause.queue])
    )
    found = await session.execute(select(QueuePause).where(QueuePause.queue == queue))
    pause = found.scalar_one()
    await session.commit()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(PAUSED_QUEUES, queue, pause.paused_at.isoformat())
            await pipe.execute()
    except (RedisError, OSError) as exc:
        # Paused in PostgreSQL: the reconciler's next pass makes the workers see it.
        log.warning("queue.pause_not_mirrored", queue=queue, error=type(exc).__name__)
    return pause


async def resume_queue(session: AsyncSession, redis: ArqRedis, *, queue: str) -> None:
    """Resume `queue` (commits) and wake idle workers; resuming a running queue does nothing."""
    await session.execute(delete(QueuePause).where(QueuePause.queue == queue))
    await session.commit()
    try:
        await _RESUME.run(
            redis,
            [PAUSED_QUEUES, queue_key(queue), wake_key(queue)],
            [queue, MAX_WAKE_TOKENS],
        )
    except (RedisError, OSError) as exc:
        log.warning("queue.resume_not_mirrored", queue=queue, error=type(exc).__name__)


async def paused_queues(session: AsyncSession) -> dict[str, QueuePause]:
    """Every paused queue's pause, by queue."""
    result = await session.execute(select(QueuePause))
    return {pause.queue: pause for pause in result.scalars()}


async def mirror_pauses(sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis) -> int:
    """Rewrite the Redis hash from the table (see the module doc); returns the paused count."""
    async with sessionmaker() as session, session.begin():
        await session.execute(text("LOCK TABLE queue_pause IN SHARE MODE"))
        pauses = await paused_queues(session)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(PAUSED_QUEUES)
            if pauses:
                mapping = {queue: pause.paused_at.isoformat() for queue, pause in pauses.items()}
                pipe.hset(PAUSED_QUEUES, mapping=mapping)
            await pipe.execute()
    return len(pauses)


async def mirrored_pauses(redis: ArqRedis) -> set[str]:
    """The queues the workers see as paused now (the Redis hash)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hkeys(PAUSED_QUEUES)
        (queues,) = await pipe.execute()
    return {queue.decode() for queue in queues}


@dataclass(frozen=True)
class QueueState:
    """One queue as an operator sees it: paused or not, its waiting and running jobs."""

    queue: str
    pause: QueuePause | None
    waiting: dict[Priority, int]
    """Jobs due on its Redis queue, by priority (delayed jobs and retries not included)."""
    oldest_waiting_age_seconds: float | None
    """How long the first job in line has been due; None when none waits."""
    running: int
    """Its jobs running now, as the live workers last announced (every few seconds)."""
    workers: int
    """Live worker processes serving it."""

    @property
    def is_paused(self) -> bool:
        return self.pause is not None


async def queue_states(
    session: AsyncSession, redis: ArqRedis, *, queues: Collection[str]
) -> list[QueueState]:
    """The state of each of `queues`, in name order (two Redis round trips, one query)."""
    names = sorted(queues)
    pauses = await paused_queues(session)
    stats = await read_queue_stats(redis, names)
    workers = await alive_workers(redis)
    states = []
    for queue in names:
        lines = [line for line in stats.depths if line.queue == queue]
        ages = [line.oldest_age_seconds for line in lines if line.oldest_age_seconds is not None]
        waiting = dict.fromkeys(PRIORITIES, 0)
        waiting.update({line.priority: line.depth for line in lines})
        states.append(
            QueueState(
                queue=queue,
                pause=pauses.get(queue),
                waiting=waiting,
                oldest_waiting_age_seconds=max(ages, default=None),
                running=sum(worker.in_flight.get(queue, 0) for worker in workers),
                workers=sum(queue in worker.queues for worker in workers),
            )
        )
    return states
