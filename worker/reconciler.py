"""The outbox reconciler: PostgreSQL says what must run; make Redis agree.

A job row that is waiting (scheduled, queued, retrying) but has no payload in Redis was lost
on the way: Redis flushed or restarted without persistence, or a crash between commit and
enqueue. A `running` row with neither payload nor in-progress key lost its worker and its
queue entry together. Both are enqueued again; the job id is ARQ's id and the enqueue script
skips jobs that exist, so running this concurrently or twice is harmless. Only one worker
runs a pass per interval (a Redis lock), and rows younger than the grace period are left to
the submit that is still enqueueing them. The same pass advances workflows whose last advance
was lost (`worker.workflow_advance.redrive_workflows`) and wakes jobs waiting for a
concurrency key whose slot was never given back (`worker.key_limits.wake_stranded`), and first
rewrites Redis's list of paused queues from PostgreSQL (`shared.jobs.queue_pauses`), so no job
it re-enqueues starts on one. Before all that, it expires waiting jobs past their start deadline
(`worker.deadlines`), which no worker may have picked up (a paused queue, no worker for their
queue).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import DependencyUnavailable
from shared.jobs.enqueue import enqueue
from shared.jobs.queue_pauses import mirror_pauses
from shared.jobs.rows import delivery_of
from shared.keys import RECONCILER_LOCK, in_progress_key, job_key
from shared.models import Job
from shared.redis import LuaScript
from shared.settings import Settings
from shared.status import WAITING, JobStatus
from worker.deadlines import DeadlineSweep
from worker.key_limits import wake_stranded
from worker.workflow_advance import redrive_workflows

log = structlog.get_logger("jobgate.worker")

_UNFINISHED = [status.value for status in (*WAITING, JobStatus.RUNNING)]


async def _unfinished_page(
    session: AsyncSession, *, after: uuid.UUID | None, grace_seconds: float, limit: int
) -> list[Job]:
    # Crosses tenants by design: it repairs delivery, it does not read or return job data.
    stmt = select(Job).where(
        Job.status.in_(_UNFINISHED),
        Job.created_at < func.now() - timedelta(seconds=grace_seconds),
    )
    if after is not None:
        stmt = stmt.where(Job.id > after)
    result = await session.execute(stmt.order_by(Job.id).limit(limit))
    return list(result.scalars())


_COUNT_EXISTING_LUA = """
local found = {}
for i = 1, #KEYS, 2 do
    found[#found + 1] = redis.call('EXISTS', KEYS[i], KEYS[i + 1])
end
return found
"""
_COUNT_EXISTING = LuaScript(_COUNT_EXISTING_LUA)


async def _lost(redis: ArqRedis, jobs: list[Job]) -> list[Job]:
    """The jobs Redis knows nothing about (neither payload nor in-progress key); one trip."""
    keys = [key for job in jobs for key in (job_key(str(job.id)), in_progress_key(str(job.id)))]
    found = await _COUNT_EXISTING.run(redis, keys)
    return [job for job, count in zip(jobs, found, strict=True) if int(count) == 0]


async def reconcile_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    grace_seconds: float,
    batch_size: int = 1000,
) -> int:
    """One full pass over unfinished jobs; returns how many were enqueued again."""
    await mirror_pauses(sessionmaker, redis)
    restored, after = 0, None
    while True:
        async with sessionmaker() as session:
            page = await _unfinished_page(
                session, after=after, grace_seconds=grace_seconds, limit=batch_size
            )
        if not page:
            return restored
        lost = await _lost(redis, page)
        if lost:
            restored += await enqueue(redis, [delivery_of(job) for job in lost])
        after = page[-1].id


async def reconcile_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: ArqRedis,
    *,
    interval_seconds: float,
    grace_seconds: float,
    sweep: DeadlineSweep,
    settings: Settings,
) -> None:
    """A pass every `interval_seconds`, by whichever worker takes the lock first."""
    while True:
        try:
            if await redis.set(RECONCILER_LOCK, "1", nx=True, px=int(interval_seconds * 1000)):
                await sweep.run()  # first: no job past its deadline is put back on a queue
                restored = await reconcile_once(sessionmaker, redis, grace_seconds=grace_seconds)
                restored += await redrive_workflows(sessionmaker, redis, settings)
                restored += await wake_stranded(redis)
                if restored:
                    log.warning("reconciler.restored", jobs=restored)
        except (RedisError, OSError, DBAPIError, DependencyUnavailable) as exc:
            # DependencyUnavailable: what raw statements (the sweep) and the enqueue script
            # raise for the same outages. The next pass carries on.
            log.warning("reconciler.failed", error=type(exc).__name__)
        await asyncio.sleep(interval_seconds)
