"""jobgate's job loop: the one module that extends ARQ's `Worker` and touches its internals.

Every ARQ method it replaces, wraps or calls, and every ARQ attribute it relies on, is here;
`tests/worker/test_arq_overrides.py` pins the installed ARQ's versions of those methods, so an
ARQ upgrade that changes one fails the tests instead of changing jobgate silently.

One turn of the loop (`main`), in named steps:

1. `_poll_iteration`: start the due jobs (`start_due_jobs`: `_take_due` takes them from Redis
   in one call of the take script, `worker.take`; `claim_together` claims them in PostgreSQL
   in one statement, `worker.admission`; `_start_tasks` runs each in its own task), cancel
   aborted ones, reap finished tasks, write ARQ's health key and run its cron.
2. `_wait_for_work`: return at once if the poll found work, once a slot frees if full, else
   when a wake token arrives (BLPOP on `jobgate:wake:<queue>`, pushed by the enqueue script),
   with the next take sent along in the same round trip; after `poll_delay` at the latest.

Each job task (`_run_taken`) runs `worker.runner.run_job`, then `_end_in_redis`: the job leaves
its queue with its keys, many jobs per MULTI/EXEC (`worker.group_commit`); one stopped by a
shutdown only gives up its in-progress key, so another worker takes it at once.

What ARQ's own loop guarantees still holds: a job stays on its queue until it ends, its
in-progress key is its lease (`worker.lease`), an abort cancels its task and ends it, and
what follows a run (a retry enqueued, a quota slot given back) happens once it has ended.
`jobgate worker`, `arq worker.WorkerSettings` (`worker.arq_command`) and the test suite all
run this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import asyncpg
import structlog
from arq.connections import create_pool, log_redis_info
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from shared.errors import DependencyUnavailable
from shared.keys import PAUSED_QUEUES, QUEUE_PREFIX, wake_key
from worker.admission import Claimed, claim_together
from worker.context import JobRunContext, WorkerContext
from worker.group_commit import GroupCommit
from worker.outcomes import after_attempt
from worker.recycling import JobBudget
from worker.runner import run_job
from worker.take import TAKE_DUE, Taken, taken_of

logger = logging.getLogger("arq.worker")
log = structlog.get_logger("jobgate.worker")

ABORT_CHECK_INTERVAL_SECONDS = 0.1
"""How often a busy worker reads ARQ's abort set (an idle one reads it once per poll)."""
REDIS_RETRY_SECONDS = 0.5


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

    @property
    def context(self) -> WorkerContext:
        """ARQ's `ctx`, as jobgate's `on_startup` filled it (read only once started)."""
        return cast(WorkerContext, self.ctx)

    # What the rest of jobgate reads and steers, without reaching into ARQ's attributes.

    def running_job_ids(self) -> list[str]:
        """The jobs this worker is running now."""
        return [job_id for job_id, task in self.tasks.items() if not task.done()]

    @property
    def jobs_finished(self) -> int:
        """Jobs this worker has run to an end, whatever the outcome."""
        return self.jobs_complete + self.jobs_failed + self.jobs_retried

    def set_taking_jobs(self, allowed: bool) -> None:
        """Let the loop take new jobs, or not (running ones carry on either way)."""
        self.allow_pick_jobs = allowed

    # The loop.

    async def main(self) -> None:
        # ARQ's `main`, with `_wait_for_work` in place of its fixed sleep between polls.
        await self._start_up()
        wake = wake_key(self.queue_name.removeprefix(QUEUE_PREFIX))
        while True:
            await self._poll_iteration()
            if self.burst and await self._is_burst_over():
                await asyncio.gather(*self.tasks.values())
                return
            await self._wait_for_work(wake)

    async def _start_up(self) -> None:
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

    async def _is_burst_over(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started():
            return True
        queued: int = await self.pool.zcard(self.queue_name)
        return queued == 0

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

    def _free_slots(self) -> int:
        """How many more jobs this worker may start now (its budget aside)."""
        limit = self.max_jobs - self.job_counter
        if self.burst and self.max_burst_jobs >= 0:
            limit = min(limit, self.max_burst_jobs - self._jobs_started())
        return limit

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

    # Step 1: take, claim and start the due jobs.

    async def start_due_jobs(self, limit: int) -> None:
        """Take up to `limit` due jobs (one Redis call), claim them (one statement), start them."""
        taken = await self._take_due(limit)
        if not taken:
            return
        self.job_counter += len(taken)
        try:
            claims = await claim_together(self.context, taken)
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
        self._start_tasks(taken, claims)
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
        return self._taken_all(await TAKE_DUE.run(self.pool, keys, args))

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
        return taken_of(reply, deserializer=self.job_deserializer, functions=self.functions)

    def _lease_ms(self) -> int:
        """How long a taken job's in-progress key lives unless renewed (`worker.lease`)."""
        return int(self.context["settings"].worker_lease_seconds * 1000)

    def _start_tasks(self, taken: list[Taken], claims: dict[str, Claimed]) -> None:
        for job in taken:
            task = self.loop.create_task(self._run_taken(job, claims.get(job.job_id)))
            task.add_done_callback(self._job_task_done)
            self.tasks[job.job_id] = self.job_tasks[job.job_id] = task
        self.started_in_last_poll = len(taken)

    def _job_task_done(self, _: asyncio.Task[None]) -> None:
        self.job_counter -= 1
        self._slot_freed.set()

    # One job's task: run it, then end it in Redis.

    async def _run_taken(self, taken: Taken, claimed: Claimed | None) -> None:
        """Run one taken job, then let it leave Redis (or go back to its queue at a shutdown)."""
        ctx = cast(
            JobRunContext,
            {
                **self.ctx,
                "job_id": taken.job_id,
                "job_try": 1,
                "score": taken.score,
                "taken": taken,
            },
        )
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
        if not await self._end_in_redis(taken.job_id, ends=ends):
            return
        if ends:
            self.jobs_complete += 1
            await after_attempt(ctx)

    async def _end_in_redis(self, job_id: str, *, ends: bool) -> bool:
        """End the job in Redis with the others ending now; False if Redis could not take it."""
        try:
            await self._ends.submit((job_id, ends))
        except (RedisError, OSError) as exc:
            # Its lease lapses by itself; a re-delivery finds the row final and drops it.
            logger.warning("job %s: could not end it in Redis (%r)", job_id, exc)
            return False
        return True

    async def _write_ends(self, ends: list[tuple[str, bool]]) -> list[None]:
        """ARQ's `finish_job` for many jobs: those that ended leave their queue with their keys;
        those stopped by a shutdown only give up their in-progress key."""
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

    # Step 2: wait for work.

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
            TAKE_DUE.queue(pipe, keys, args)
            _, reply = await pipe.execute(raise_on_error=False)
        return self._taken_all(await TAKE_DUE.reply_of(self.pool, reply, keys, args))

    async def _wait_for_free_slot(self) -> None:
        """Return once one of this worker's `max_jobs` slots is free, or after `poll_delay`."""
        self._slot_freed.clear()
        if self.job_counter < self.max_jobs:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_delay_s):
                await self._slot_freed.wait()


class JobgateWorker(WakeableWorker):
    """The loop of `jobgate worker`: within the process's job budget, alive through outages."""

    def __init__(self, *, budget: JobBudget, **options: Any) -> None:
        super().__init__(**options)
        self.budget = budget
        self.is_redis_down = False

    async def start_due_jobs(self, limit: int) -> None:
        """Start at most the jobs the budget has left."""
        async with self.budget.lock:
            remaining = self.budget.remaining
            if remaining is not None:
                limit = min(limit, remaining)
            if limit > 0:
                await super().start_due_jobs(limit)
            self.budget.started += self.started_in_last_poll

    def _free_slots(self) -> int:
        # Also what a wait takes as it ends: no more than the budget has left (another queue's
        # worker may spend some meanwhile; `start_due_jobs` gives back what it cannot start).
        remaining = self.budget.remaining
        slots = super()._free_slots()
        return slots if remaining is None else min(slots, remaining)

    async def _poll_iteration(self) -> None:
        # ARQ's poll loop ends at the first Redis error (and so would this worker, its process
        # idling on); instead keep polling until Redis answers again.
        try:
            await super()._poll_iteration()
        except (RedisError, OSError, DependencyUnavailable) as exc:
            if not self.is_redis_down:
                log.warning("worker.redis_unavailable", queue=self.queue_name, error=repr(exc))
            self.is_redis_down = True
            await asyncio.sleep(REDIS_RETRY_SECONDS)
        else:
            if self.is_redis_down:
                log.info("worker.redis_back", queue=self.queue_name)
            self.is_redis_down = False


async def stop_worker(
    worker: WakeableWorker, main: asyncio.Task[None], grace_seconds: float
) -> None:
    """Take no new jobs, let running ones finish for up to `grace_seconds`, then stop.

    Jobs still running at the limit are cancelled; they stay on their queue, so they run
    again (their rows say `running` and are claimed afresh).
    """
    worker.allow_pick_jobs = False
    # Let the poll loop end by itself (ARQ's burst exit: it returns once its tasks are done).
    # Cancelling it mid-iteration could interrupt a Redis call or a claim half-way and leave
    # a connection unreturned ("Unclosed client session").
    worker.burst, worker.max_burst_jobs = True, 0
    await asyncio.wait([main], timeout=grace_seconds)
    main.cancel()
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(main, *worker.tasks.values(), return_exceptions=True)
    # ARQ's close() gathers its tasks again and would re-raise their cancellation.
    worker.tasks.clear()
    try:
        await worker.close()
    except (RedisError, OSError) as exc:
        # Redis is down: ARQ could not delete its health key (it expires by itself) and
        # skipped the rest of close(); do that rest, so the process still exits cleanly.
        log.warning("worker.close_failed", queue=worker.queue_name, error=type(exc).__name__)
        if worker.on_shutdown is not None:
            await worker.on_shutdown(worker.ctx)
        await worker.pool.aclose(close_connection_pool=True)
