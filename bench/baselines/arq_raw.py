"""Baseline 2: raw ARQ. `enqueue_job` throughput from one process, drain and pickup latency.

Two worker configurations: ARQ's default poll delay (0.5 s) with jobgate's `max_jobs`, and ARQ
tuned for throughput (`max_jobs=100`, `poll_delay=0.01`). Drains are end to end like jobgate's:
the worker is idle and ready, one process enqueues N no-op jobs (50 at a time) and the clock
stops when the queue is empty (ARQ removes a job from it when the job has finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import AsyncIterator

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.baselines.arq_worker import QUEUE
from bench.context import Context
from bench.processes import Child, running, spawn
from bench.results import Figure, Results
from bench.services import flush_redis
from bench.stats import percentile
from shared.settings import Settings

ENQUEUE_CONCURRENCY = 50
TUNED_MAX_JOBS, TUNED_POLL_DELAY_SECONDS = 100, 0.01
ARQ_DEFAULT_POLL_DELAY_SECONDS = 0.5
FIGURES = (
    Figure.ARQ_ENQUEUE_JOBS_S,
    Figure.ARQ_PICKUP_DEFAULT_P50_MS,
    Figure.ARQ_PICKUP_DEFAULT_P99_MS,
    Figure.ARQ_DRAIN_SAME_JOBS_S,
    Figure.ARQ_PICKUP_TUNED_P50_MS,
    Figure.ARQ_DRAIN_TUNED_JOBS_S,
    Figure.ARQ_WORKER_RSS_MB,
)


async def enqueue_many(redis: ArqRedis, count: int, concurrency: int = ENQUEUE_CONCURRENCY) -> None:
    """Enqueue `count` no-op jobs, `concurrency` at a time."""
    remaining = count

    async def enqueuer() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await redis.enqueue_job("noop")

    await asyncio.gather(*(enqueuer() for _ in range(concurrency)))


@contextlib.asynccontextmanager
async def arq_worker(
    context: Context, redis: ArqRedis, *, max_jobs: int, poll_delay: float
) -> AsyncIterator[Child]:
    """A raw ARQ worker process, returned once it has run a job."""
    argv = [sys.executable, "-m", "bench.baselines.arq_worker", f"--redis-url={context.redis_url}"]
    argv += [f"--max-jobs={max_jobs}", f"--poll-delay={poll_delay}"]
    name = f"arq-worker-{max_jobs}-{poll_delay:g}"
    child = spawn(name, argv, env=os.environ, log_dir=context.log_dir)
    async with running(child):
        job = await redis.enqueue_job("stamp")
        assert job is not None  # noqa: S101 (a fresh id is never a duplicate)
        await job.result(timeout=60, poll_delay=0.05)
        yield child


async def pickup_latencies(redis: ArqRedis, samples: int) -> list[float]:
    """Seconds from `enqueue_job` to the function starting, one job at a time, random gaps."""
    latencies = []
    for _ in range(samples):
        # Uniform gaps cover every phase of the worker's poll cycle.
        await asyncio.sleep(random.uniform(0.05, 0.55))  # noqa: S311 (not cryptography)
        sent = time.time()
        job = await redis.enqueue_job("stamp")
        assert job is not None  # noqa: S101
        started: float = await job.result(timeout=10, poll_delay=0.002)
        latencies.append(started - sent)
    return latencies


async def drain(redis: ArqRedis, count: int, deadline_seconds: float) -> tuple[float, int]:
    """Enqueue `count` no-op jobs to a ready worker; (seconds until all ran, jobs done)."""
    started = time.monotonic()
    enqueuing = asyncio.create_task(enqueue_many(redis, count))
    while time.monotonic() - started < deadline_seconds:
        if enqueuing.done() and await redis.zcard(QUEUE) == 0:
            break
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    await enqueuing
    return elapsed, count - await redis.zcard(QUEUE)


async def measure_raw_arq(context: Context, results: Results) -> None:
    """Every raw ARQ figure."""
    sizes = context.sizes
    redis = await create_pool(RedisSettings.from_dsn(context.redis_url), default_queue_name=QUEUE)
    try:
        await flush_redis(context.redis_url)
        started = time.monotonic()
        await enqueue_many(redis, sizes.enqueue_jobs)
        results.record(Figure.ARQ_ENQUEUE_JOBS_S, sizes.enqueue_jobs / (time.monotonic() - started))
        await flush_redis(context.redis_url)
        jobgate_max_jobs = Settings().worker_max_jobs
        async with arq_worker(
            context, redis, max_jobs=jobgate_max_jobs, poll_delay=ARQ_DEFAULT_POLL_DELAY_SECONDS
        ):
            latencies = await pickup_latencies(redis, sizes.baseline_pickup_samples)
            results.record(Figure.ARQ_PICKUP_DEFAULT_P50_MS, percentile(latencies, 0.5) * 1000)
            results.record(Figure.ARQ_PICKUP_DEFAULT_P99_MS, percentile(latencies, 0.99) * 1000)
            count = sizes.drain_untuned_jobs
            seconds, done = await drain(redis, count, sizes.drain_deadline_seconds)
            results.record(Figure.ARQ_DRAIN_SAME_JOBS_S, done / seconds)
            _note_drain(results, f"raw ARQ max_jobs={jobgate_max_jobs}", done, count, seconds)
        await flush_redis(context.redis_url)
        async with arq_worker(
            context, redis, max_jobs=TUNED_MAX_JOBS, poll_delay=TUNED_POLL_DELAY_SECONDS
        ) as child:
            latencies = await pickup_latencies(redis, sizes.baseline_pickup_samples)
            results.record(Figure.ARQ_PICKUP_TUNED_P50_MS, percentile(latencies, 0.5) * 1000)
            seconds, done = await drain(redis, sizes.drain_jobs, sizes.drain_deadline_seconds)
            results.record(Figure.ARQ_DRAIN_TUNED_JOBS_S, done / seconds)
            results.record(Figure.ARQ_WORKER_RSS_MB, child.rss_mb())
            _note_drain(results, "raw ARQ tuned", done, sizes.drain_jobs, seconds)
    finally:
        await redis.aclose()


def _note_drain(results: Results, what: str, done: int, count: int, seconds: float) -> None:
    if done < count:
        results.note(f"{what} drain hit its deadline: {done:,} of {count:,} jobs, {seconds:.1f} s.")
