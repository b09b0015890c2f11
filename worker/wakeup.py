"""An ARQ worker that wakes when work arrives instead of sleeping a whole poll interval.

ARQ polls its queue every `poll_delay` seconds, so an idle worker starts a new job about half
an interval late on average. The enqueue script (shared/enqueue.py) pushes a token onto
`jobgate:wake:<queue>` for every job it makes due; this worker waits on that list with
BLPOP, for at most `poll_delay`, between polls. A job reaches an idle worker within a few
milliseconds, and the periodic poll still finds anything a lost token would have announced.

Between polls it never waits when waiting cannot help: after a poll that started jobs it
polls again at once (more may be due than one read returned), and a full worker polls again as
soon as one of its jobs ends rather than sleeping a whole `poll_delay`. Ids of jobs this worker
is running (ARQ leaves them on their queue until they end) are skipped without asking Redis.

`arq worker.WorkerSettings` runs ARQ's own `Worker` (plain polling); `jobgate worker` and the
test suite run this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from shared.keys import QUEUE_PREFIX, wake_key

logger = logging.getLogger("arq.worker")

# ARQ's check before starting a job, as one atomic step: not in progress anywhere, still on
# the queue and due; then mark it in progress. Returns its score, or nil.
_TAKE_JOB_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return false
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
    return false
end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


ABORT_CHECK_INTERVAL_SECONDS = 0.1
"""How often a busy worker reads ARQ's abort set (an idle one reads it once per poll)."""


class WakeableWorker(Worker):
    """ARQ's `Worker`, with its sleep between polls replaced by a wait for a wake token."""

    started_in_last_poll = 0
    """Jobs the last `start_jobs` call started (0: nothing new was due)."""
    _next_abort_check = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot_freed = asyncio.Event()
        """Set whenever a job of this worker ends and frees its slot."""

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

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """ARQ's `start_jobs` in one Redis round trip per job, minus jobs running here already.

        ARQ checks and takes each job with WATCH, EXISTS, ZSCORE and MULTI/EXEC (four round
        trips); `_TAKE_JOB_LUA` makes the same check-and-set atomically inside Redis. Ids of
        jobs this worker is running (still on their queue until they end) are skipped at once.
        """
        self.started_in_last_poll = 0
        for job_id_b in job_ids:
            job_id = job_id_b.decode()
            running = self.tasks.get(job_id)
            if running is not None and not running.done():
                continue
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            try:
                score = await self.pool.eval(  # type: ignore[misc,unused-ignore]
                    _TAKE_JOB_LUA,
                    2,
                    in_progress_key_prefix + job_id,
                    self.queue_name,
                    job_id,
                    str(timestamp_ms()),
                    str(self._lease_ms()),
                )
            except BaseException:  # Redis down (or cancelled): give the slot back, not leak it
                score = None
                raise
            finally:
                if score is None:
                    self.job_counter -= 1
                    self.sem.release()
            if score is None:  # running elsewhere, finished, or not due (re-enqueued later)
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
            self.started_in_last_poll += 1

    def _lease_ms(self) -> int:
        """How long a taken job's in-progress key lives unless renewed (`worker.lease`).

        The lease comes from the settings `on_startup` put in ctx; without them (a bare ARQ
        setup), ARQ's own in-progress timeout.
        """
        settings = self.ctx.get("settings")
        if settings is None:
            return int(self.in_progress_timeout_s * 1000)
        return int(settings.worker_lease_seconds * 1000)

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
            # Redis >= 6 takes fractional BLPOP timeouts; redis-py's annotation says int.
            await self.pool.blpop([wake], timeout=self.poll_delay_s)  # type: ignore[misc,arg-type]
        except (RedisError, OSError):
            await asyncio.sleep(self.poll_delay_s)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def _wait_for_free_slot(self) -> None:
        """Return once one of this worker's `max_jobs` slots is free, or after `poll_delay`.

        Not by acquiring ARQ's semaphore: it holds `max_jobs + 1` permits, so acquiring it
        succeeds while the worker is full and the poll loop would spin without yielding.
        """
        self._slot_freed.clear()
        if self.job_counter < self.max_jobs:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_delay_s):
                await self._slot_freed.wait()
