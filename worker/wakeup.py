"""jobgate's ARQ worker: takes a poll's due jobs at once, and wakes when work arrives.

Per poll, instead of ARQ's read of the queue and then, per job, a check-and-take (four round
trips), a read of the payload and a claim in PostgreSQL, this worker makes one Redis call
(`_TAKE_DUE_LUA`: read the due ids, skip those in progress, read their payloads, mark them in
progress with a lease) and one statement claiming all of them (`job_transitions.claim_jobs`).
Each job then runs in its own task through `worker.runner.run_job`; successes are recorded
many per statement (`worker.group_commit`), and jobs leave Redis the same way, one
MULTI/EXEC for all that ended together. A job of a tenant with a concurrency quota is not
claimed with the others: the runner takes its quota slot first, then claims it alone.

ARQ polls its queue every `poll_delay` seconds, so an idle worker starts a new job about half
an interval late on average. The enqueue script (shared/jobs/enqueue.py) pushes a token onto
`jobgate:wake:<queue>` for every job it makes due; this worker waits on that list with
BLPOP, for at most `poll_delay`, between polls, with its take sent along in the same pipeline
(Redis runs it as the BLPOP returns). A job reaches an idle worker within a few milliseconds,
and the periodic poll still finds anything a lost token would have announced.

Between polls it never waits when waiting cannot help: after a poll that started jobs it
polls again at once (more may be due than one read returned), and a full worker polls again as
soon as one of its jobs ends rather than sleeping a whole `poll_delay`.

What ARQ's own job loop did and still holds: a job stays on its queue until it ends, its
in-progress key is its lease (`worker.lease`), an abort cancels its task (`_cancel_aborted_jobs`)
and ends it, a shutdown cancels it and leaves it queued for another worker, and `after_job_end`
runs once it has ended. `jobgate worker`, `arq worker.WorkerSettings` (`worker.arq_command`)
and the test suite all run this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import create_pool, log_redis_info
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from shared.jobs.transitions import JobKey, claim_jobs
from shared.keys import PAUSED_QUEUES, QUEUE_PREFIX, wake_key
from shared.redis import LuaScript
from worker.group_commit import GroupCommit
from worker.runner import Claimed, run_job

logger = logging.getLogger("arq.worker")

# Take up to ARGV[3] due jobs of queue KEYS[1], reading at most ARGV[4] ids: skip those in
# progress (here or elsewhere), mark the others in progress for ARGV[2] ms and return
# id, score, payload for each. An id whose payload expired is dropped, as ARQ drops it (its row
# is re-enqueued by the reconciler). Key names are built here from ARQ's prefixes (ARGV[5],
# ARGV[6]): fine on one Redis server, which is what ARQ supports. Nothing is taken while the
# queue (ARGV[7]) is in the paused hash KEYS[2] (`shared.queue_pauses`).
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
_TAKE_DUE = LuaScript(_TAKE_DUE_LUA)


@dataclass(frozen=True)
class Taken:
    """A job this worker took from its queue (its in-progress key is set)."""

    job_id: str
    score: int
    tenant_id: str | None
    """Its tenant; None if it is not a job this worker can run (someone else's ARQ job: an
    unknown function, ids that are not UUIDs, a payload that is not JSON)."""


ABORT_CHECK_INTERVAL_SECONDS = 0.1
"""How often a busy worker reads ARQ's abort set (an idle one reads it once per poll)."""


class WakeableWorker(Worker):
    """ARQ's `Worker`, taking and claiming a poll's jobs at once, woken by wake tokens."""

    started_in_last_poll = 0
    """Jobs the last poll started (0: nothing new was due)."""
    _prefetched: list[Taken] | None = None
    """Jobs the last wait took as it ended (`_wait_then_take`), for the next poll to start."""
    _next_abort_check = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot_freed = asyncio.Event()
        """Set whenever a job of this worker ends and frees its slot."""
        self._ends: GroupCommit[tuple[str, bool], None] = GroupCommit(self._write_ends)

    async def _cancel_aborted_jobs(self) -> None:
        """ARQ's abort check (a MULTI/EXEC), only when it can matter and at most every 100 ms.

        ARQ runs it on every poll, and this worker polls again as soon as a slot frees, so
        under load it would cost a round trip per job. With no job running here there is
        nothing to cancel (a waiting job is cancelled in PostgreSQL and never claimed).
        """
        now = time.monotonic()
        if not self.job_tasks or now < self._next_abort_check:
            return
        self._next_abort_check = now + ABORT_CHECK_INTERVAL_SECONDS
        await super()._cancel_aborted_jobs()

    def _free_slots(self) -> int:
        """How many more jobs this worker may start now (its budget aside)."""
        limit = self.max_jobs - self.job_counter
        if self.burst and self.max_burst_jobs >= 0:
            limit = min(limit, self.max_burst_jobs - self._jobs_started())
        return limit

    async def _poll_iteration(self) -> None:
        # ARQ's, with `start_due_jobs` in place of its read of the queue and `start_jobs`.
        limit = self._free_slots()
        self.started_in_last_poll = 0
        try:
            if self.allow_pick_jobs and limit > 0:
                await self.start_due_jobs(limit)
        finally:
            # Taken as the wait ended but not started (picking paused, a stop, no budget left):
            # give them up at once, for this worker's next poll or another worker.
            if self._prefetched:
                await self._write_ends([(job.job_id, False) for job in self._prefetched])
            self._prefetched = None
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()  # an error of this worker's own (not a job's) ends the loop
        await self.heart_beat()

    async def start_due_jobs(self, limit: int) -> None:
        """Take up to `limit` due jobs (one Redis call), claim them (one statement), start them."""
        taken = await self._take_due(limit)
        if not taken:
            return
        self.job_counter += len(taken)
        try:
            claims = await self._claim_together(taken)
        except BaseException as exc:
            # Let the jobs go at once, for this worker's next poll or another worker.
            self.job_counter -= len(taken)
            with contextlib.suppress(RedisError, OSError):
                await self._write_ends([(job.job_id, False) for job in taken])
            if isinstance(exc, asyncpg.DeadlockDetectedError):
                # Crossed a statement locking the same rows in another order (a workflow's
                # cancel): PostgreSQL undid the claim; the next poll claims them again.
                logger.warning("claim: deadlock detected, %d jobs released", len(taken))
                return
            raise  # PostgreSQL down: the health monitor pauses this worker meanwhile
        for job in taken:
            task = self.loop.create_task(self._run_taken(job, claims.get(job.job_id)))
            task.add_done_callback(self._job_task_done)
            self.tasks[job.job_id] = self.job_tasks[job.job_id] = task
        self.started_in_last_poll = len(taken)
        # Let the new jobs begin before this loop looks for more (its next poll at once).
        await asyncio.sleep(0)

    async def _take_due(self, limit: int) -> list[Taken]:
        """Up to `limit` due jobs, taken now or as the last wait ended (the rest given up)."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            if len(prefetched) > limit:  # the process's budget shrank meanwhile
                await self._write_ends([(job.job_id, False) for job in prefetched[limit:]])
            return prefetched[:limit]
        keys, args = self._take_arguments(limit)
        return self._taken_all(await _TAKE_DUE.run(self.pool, keys, args))

    def _take_arguments(self, limit: int) -> tuple[list[str], list[str]]:
        # The cut-off is now: every due score of jobgate's is far in the past (a priority
        # offset of decades, shared.jobs.enqueue), so a take that runs later still finds what has
        # been made due by then; only a foreign ARQ job enqueued meanwhile waits a poll.
        return [self.queue_name, PAUSED_QUEUES], [
            str(timestamp_ms()),
            str(self._lease_ms()),
            str(limit),
            str(max(self.queue_read_limit, limit)),
            in_progress_key_prefix,
            job_key_prefix,
            self.queue_name.removeprefix(QUEUE_PREFIX),
        ]

    def _taken_all(self, reply: list[bytes]) -> list[Taken]:
        return [
            self._taken(reply[i].decode(), reply[i + 1], reply[i + 2])
            for i in range(0, len(reply), 3)
        ]

    def _taken(self, job_id: str, score: bytes, payload: bytes) -> Taken:
        tenant_id = None
        try:
            job = self.job_deserializer(payload) if self.job_deserializer else {}
            uuid.UUID(job_id)
            if job["f"] in self.functions:
                tenant_id = str(uuid.UUID(job["k"]["tenant_id"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # not one of jobgate's: reported and dropped by `_run_taken`
        return Taken(job_id, int(float(score)), tenant_id)

    async def _claim_together(self, taken: list[Taken]) -> dict[str, Claimed]:
        """Claim, in one statement, the jobs whose tenant has no concurrency quota.

        The others (and unreadable ones) are left to the runner, which takes the tenant's
        slot before it claims.
        """
        keys = []
        for job in taken:
            if job.tenant_id is None:
                continue
            tenant_id = uuid.UUID(job.tenant_id)
            if await self.ctx["quotas"].limit_of(tenant_id) is None:
                keys.append(JobKey(tenant_id, uuid.UUID(job.job_id)))
        claimed = await claim_jobs(
            self.ctx["engine"],
            keys,
            lost_attempts_allowed=self.ctx["settings"].worker_lost_attempts_allowed,
        )
        by_id = {str(job.id): job for job in claimed}
        return {str(key.job_id): Claimed(by_id.get(str(key.job_id))) for key in keys}

    async def _run_taken(self, taken: Taken, claimed: Claimed | None) -> None:
        """Run one taken job, then let it leave Redis (or go back to its queue at a shutdown)."""
        ctx = {**self.ctx, "job_id": taken.job_id, "job_try": 1, "score": taken.score}
        ends = True
        try:
            if taken.tenant_id is None:
                # Not a job of this queue's types: ARQ would fail it ("function not found").
                logger.warning("job %s: unknown or unreadable payload, dropped", taken.job_id)
            else:
                await run_job(ctx, tenant_id=taken.tenant_id, claimed=claimed)
        except asyncio.CancelledError:
            # An abort ends the job (the runner recorded it); a shutdown leaves it queued.
            ends = taken.job_id in self.aborting_tasks
            self.aborting_tasks.discard(taken.job_id)
        except Exception:
            # A failure of the runner itself (jobs' own errors are outcomes): ARQ ends such
            # a job too; its row, still `running`, is re-driven by the reconciler.
            logger.exception("job %s: the runner failed", taken.job_id)
        finally:
            self.job_tasks.pop(taken.job_id, None)
        try:
            await self._ends.submit((taken.job_id, ends))
        except (RedisError, OSError) as exc:
            # Its lease lapses by itself; a re-delivery finds the row final and drops it.
            logger.warning("job %s: could not end it in Redis (%r)", taken.job_id, exc)
            return
        if ends:
            self.jobs_complete += 1
            if self.after_job_end is not None:
                await self.after_job_end(ctx)

    async def _write_ends(self, ends: list[tuple[str, bool]]) -> list[None]:
        """Jobs that ended leave their queue with their keys; those stopped by a shutdown only
        give up their in-progress key, so another worker takes them at once."""
        ended = [job_id for job_id, has_ended in ends if has_ended]
        keys = [in_progress_key_prefix + job_id for job_id, _ in ends]
        for job_id in ended:
            keys += (job_key_prefix + job_id, retry_key_prefix + job_id)
        async with self.pool.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            if ended:
                pipe.zrem(self.queue_name, *ended)
                pipe.zrem(abort_jobs_ss, *ended)
            await pipe.execute()
        return [None] * len(ends)

    def _job_task_done(self, _: asyncio.Task[None]) -> None:
        self.job_counter -= 1
        self._slot_freed.set()

    def _lease_ms(self) -> int:
        """How long a taken job's in-progress key lives unless renewed (`worker.lease`)."""
        return int(self.ctx["settings"].worker_lease_seconds * 1000)

    async def main(self) -> None:
        # Mirrors arq.worker.Worker.main (0.28) except for the wait between polls.
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings,
                job_deserializer=self.job_deserializer,
                job_serializer=self.job_serializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        logger.info("Starting worker for %d functions", len(self.functions))
        await log_redis_info(self.pool, logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        wake = wake_key(self.queue_name.removeprefix(QUEUE_PREFIX))
        while True:
            await self._poll_iteration()
            if self.burst:
                if 0 <= self.max_burst_jobs <= self._jobs_started():
                    await asyncio.gather(*self.tasks.values())
                    return
                if await self.pool.zcard(self.queue_name) == 0:
                    await asyncio.gather(*self.tasks.values())
                    return
            await self._wait_for_work(wake)

    async def _wait_for_work(self, wake: str) -> None:
        """Return when there may be work to start, or after `poll_delay` at the latest."""
        if not self.allow_pick_jobs:
            await asyncio.sleep(self.poll_delay_s)
            return
        if self.job_counter >= self.max_jobs:
            # Full: a token taken now would be wasted on this worker; poll once a slot frees.
            await self._wait_for_free_slot()
            return
        if self.started_in_last_poll:
            return  # the last poll found work: more may be due, look again at once
        try:
            self._prefetched = await self._wait_then_take(wake, self._free_slots())
        except (RedisError, OSError):
            await asyncio.sleep(self.poll_delay_s)

    async def _wait_then_take(self, wake: str, limit: int) -> list[Taken]:
        """Wait for a wake token (BLPOP), then take due jobs: one round trip, not two.

        Both commands go out together; Redis runs the take the moment the BLPOP returns
        (a token, or `poll_delay` gone by), before answering either, so a woken worker has
        its jobs in hand without asking again. Its caller's next poll starts them.
        """
        keys, args = self._take_arguments(limit)
        async with self.pool.pipeline(transaction=False) as pipe:
            # Redis >= 6 takes fractional BLPOP timeouts; redis-py's annotation says int.
            pipe.blpop([wake], timeout=self.poll_delay_s)  # type: ignore[arg-type]
            _TAKE_DUE.queue(pipe, keys, args)
            _, reply = await pipe.execute(raise_on_error=False)
        return self._taken_all(await _TAKE_DUE.reply_of(self.pool, reply, keys, args))

    async def _wait_for_free_slot(self) -> None:
        """Return once one of this worker's `max_jobs` slots is free, or after `poll_delay`."""
        self._slot_freed.clear()
        if self.job_counter < self.max_jobs:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_delay_s):
                await self._slot_freed.wait()
