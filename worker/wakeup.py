"""An ARQ worker that wakes when work arrives instead of sleeping a whole poll interval.

ARQ polls its queue every `poll_delay` seconds, so an idle worker starts a new job about half
an interval late on average. The enqueue script (shared/enqueue.py) pushes a token onto
`jobgate:wake:<queue>` for every job it makes due; this worker waits on that list with
BLPOP, for at most `poll_delay`, between polls. A job reaches an idle worker within a few
milliseconds, and the periodic poll still finds anything a lost token would have announced.

`arq worker.WorkerSettings` runs ARQ's own `Worker` (plain polling); `jobgate worker` and the
test suite run this one.
"""

from __future__ import annotations

import asyncio
import logging

from arq.connections import create_pool, log_redis_info
from arq.worker import Worker
from redis.exceptions import RedisError

from shared.keys import QUEUE_PREFIX, wake_key

logger = logging.getLogger("arq.worker")


class WakeableWorker(Worker):
    """ARQ's `Worker`, with its sleep between polls replaced by a wait for a wake token."""

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
        """Return when a wake token arrives or after `poll_delay`, whichever is first."""
        if self.job_counter >= self.max_jobs or not self.allow_pick_jobs:
            # Full (or draining): a token taken now would be wasted on this worker.
            await asyncio.sleep(self.poll_delay_s)
            return
        try:
            # Redis >= 6 takes fractional BLPOP timeouts; redis-py's annotation says int.
            await self.pool.blpop([wake], timeout=self.poll_delay_s)  # type: ignore[misc,arg-type]
        except (RedisError, OSError):
            await asyncio.sleep(self.poll_delay_s)
