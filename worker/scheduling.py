"""Moving due jobs (delayed submits, retries, jobs put back) from the scheduled set onto their
queues: when the first is due, and at least every interval.

Every worker runs a promoter; the promote script is atomic, so two never move a job twice. A
promoter sleeps until the first scheduled job is due, at most `interval_seconds` (a job
scheduled elsewhere meanwhile, by a gateway or another worker, waits at most that long). A job
this worker schedules itself (`expect`) wakes it earlier if it is due first: a job waiting for
its rate limit's booked start (`worker.rate_limits`) or a short retry starts on time, not at
the next tick.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from shared.jobs.enqueue import next_due_ms, promote_due

log = structlog.get_logger("jobgate.worker")

MIN_SLEEP_SECONDS = 0.001
"""Shortest sleep between two promotions, so a job due right now cannot make a busy loop."""


class Promoter:
    """The promotion loop of one worker (`run_forever`), woken early by `expect`."""

    def __init__(self, redis: ArqRedis, interval_seconds: float) -> None:
        self._redis = redis
        self._interval_seconds = interval_seconds
        self._wake_at = math.inf
        """Epoch seconds of the planned next promotion."""
        self._woken = asyncio.Event()

    def expect(self, due: datetime | None) -> None:
        """This worker scheduled a job due at `due`: promote then, if before the planned time."""
        if due is not None and due.timestamp() < self._wake_at:
            self._woken.set()

    async def run_forever(self) -> None:
        """Promote due jobs, then sleep until the next is due (at most the interval)."""
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # A cancel (the worker's shutdown) that an await below swallowed: on Python
                # 3.11, `asyncio.wait_for` (redis-py's pool uses it) can, when it races with
                # the awaited result. Stop all the same.
                raise asyncio.CancelledError
            # Until the sleep is planned, any expected job wakes the next one at once: it may
            # have been scheduled after the next due time was read.
            self._woken.clear()
            self._wake_at = math.inf
            sleep_seconds = self._interval_seconds
            try:
                while await promote_due(self._redis) > 0:
                    pass  # a full batch moved: there may be more due right now
                first_due_ms = await next_due_ms(self._redis)
            except (RedisError, OSError) as exc:
                log.warning("promote.failed", error=type(exc).__name__)
            else:
                if first_due_ms is not None:
                    until_due = first_due_ms / 1000 - time.time()
                    sleep_seconds = max(min(until_due, sleep_seconds), MIN_SLEEP_SECONDS)
            self._wake_at = time.time() + sleep_seconds
            # `asyncio.wait`, not `asyncio.timeout`: on Python 3.11 a cancel (the worker's
            # shutdown) arriving as the timeout fires can be taken for the timeout and
            # swallowed, and this loop would never stop.
            woken = asyncio.ensure_future(self._woken.wait())
            try:
                await asyncio.wait({woken}, timeout=sleep_seconds)
            finally:
                woken.cancel()
