"""Tell Redis this worker process is alive, what it serves and runs (`shared.presence`).

Every `JOBGATE_WORKER_ANNOUNCE_INTERVAL_SECONDS` the process writes one announcement, valid for
three intervals; it keeps announcing while it drains on SIGTERM and withdraws once all its ARQ
workers have stopped. Everything announced is read from the workers' own memory (ARQ's task
table and counters), so announcing costs one Redis round trip per interval, nothing per job.

The same numbers feed `jobgate_worker_jobs_in_flight` on the worker's own `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence

import structlog
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from shared.keys import QUEUE_PREFIX
from shared.presence import MAX_RUNNING_IDS, WorkerPresence, announce, withdraw
from shared.redis import create_redis
from shared.settings import Settings
from worker.loop import WakeableWorker
from worker.recycling import JobBudget
from worker.settings import worker_name

log = structlog.get_logger("jobgate.worker")

TTL_INTERVALS = 3
"""An announcement outlives this many intervals: one missed write does not mark a worker dead."""
WITHDRAW_TIMEOUT_SECONDS = 1.0


def _queue_of(worker: WakeableWorker) -> str:
    return worker.queue_name.removeprefix(QUEUE_PREFIX)


def presence_of(
    workers: Sequence[WakeableWorker], budget: JobBudget, *, name: str, since: float
) -> WorkerPresence:
    """What this process announces: its queues, the jobs it runs, how many it started and ran."""
    in_flight: dict[str, int] = {}
    running: list[str] = []
    finished = 0
    for worker in workers:
        ids = worker.running_job_ids()
        in_flight[_queue_of(worker)] = len(ids)
        running += ids
        finished += worker.jobs_finished
    return WorkerPresence(
        name=name,
        queues=list(in_flight),
        in_flight=in_flight,
        running=running[:MAX_RUNNING_IDS],
        started=budget.started,
        finished=finished,
        since=since,
        announced_at=time.time(),
    )


class InFlightCollector(Collector):
    """`jobgate_worker_jobs_in_flight{queue}`, read from the workers when scraped."""

    def __init__(self, workers: Sequence[WakeableWorker]) -> None:
        self._workers = workers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "jobgate_worker_jobs_in_flight",
            "Jobs this worker process is running now, by queue.",
            labels=["queue"],
        )
        for worker in self._workers:
            family.add_metric([_queue_of(worker)], len(worker.running_job_ids()))
        yield family


async def announce_while_running(
    settings: Settings,
    workers: Sequence[WakeableWorker],
    mains: Sequence[asyncio.Task[None]],
    budget: JobBudget,
) -> None:
    """Announce this process every interval until every worker's main task has ended."""
    redis = create_redis(settings)
    name, since = worker_name(), time.time()
    interval = settings.worker_announce_interval_seconds
    collector = InFlightCollector(workers)
    REGISTRY.register(collector)
    try:
        while True:
            presence = presence_of(workers, budget, name=name, since=since)
            try:
                await announce(redis, presence, ttl_seconds=interval * TTL_INTERVALS)
            except (RedisError, OSError) as exc:  # the workers report Redis outages themselves
                log.debug("worker.announce_failed", error=type(exc).__name__)
            _done, pending = await asyncio.wait(mains, timeout=interval)
            if not pending:
                break
    finally:
        REGISTRY.unregister(collector)
        # Bounded: a hung Redis must not hold up the exit (the announcement expires anyway).
        with contextlib.suppress(RedisError, OSError):
            async with asyncio.timeout(WITHDRAW_TIMEOUT_SECONDS):
                await withdraw(redis, name)
        await redis.aclose(close_connection_pool=True)
