"""jobgate's run path, with a real `jobgate worker` process at its defaults.

- Pickup latency: one `bench_stamp` job at a time on an idle worker, random gaps between them.
  The latency is the wall-clock time the job function itself took as it started (it reads
  `time.time()` first thing, see `bench.jobs`) minus the client's `time.time()` just before it
  sent `POST /jobs/bench_stamp`. Both clocks are this machine's, so the figure covers the whole
  path: HTTP, auth, insert and commit, enqueue, the worker noticing the job, claim, validation.
- Long-poll delay: a `bench_stamp` job sleeping 100 ms; the client asks `GET /jobs/{id}?wait=10`
  right after submitting and the delay is its receive time minus the job's `finished_at` (set by
  PostgreSQL as the worker records the outcome). Samples whose GET was sent after the job had
  finished are dropped (and counted in a footnote).
- Drain: the worker idle and ready, the load generator submits N echo jobs in batches, and the
  clock runs from its first request to the moment the ARQ queue is empty (a job leaves it once
  its outcome is committed); then PostgreSQL must show N `succeeded` rows.
- Footprint: the RSS of the gateway and the worker right after the drain.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from bench.context import ECHO_ARGS, Context, batch_body, check_load
from bench.http import Connection, encode_request
from bench.load import LoadSpec, run_load
from bench.processes import Child, running, spawn
from bench.results import Figure, Results
from bench.services import count_jobs, reset_jobs
from bench.stats import percentile
from shared.keys import SCHEDULED_SET, queue_key

FIGURES = (
    Figure.PICKUP_P50_MS,
    Figure.PICKUP_P99_MS,
    Figure.LONGPOLL_P50_MS,
    Figure.DRAIN_JOBS_S,
    Figure.DRAIN_2PROC_JOBS_S,
    Figure.GATEWAY_RSS_MB,
    Figure.WORKER_RSS_MB,
)
LONGPOLL_JOB_MS = 100


class Prober:
    """One client submitting and reading jobs one at a time, over a keep-alive connection."""

    def __init__(self, context: Context, port: int) -> None:
        self.port = port
        self.headers = context.auth_headers()
        self.connection = Connection("127.0.0.1", port)

    def _raw(self, method: str, path: str, body: bytes = b"") -> bytes:
        headers = self.headers if body else {"Authorization": self.headers["Authorization"]}
        host = f"127.0.0.1:{self.port}"
        return encode_request(method, path, host=host, headers=headers, body=body)

    async def submit(self, name: str, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """(wall-clock time just before sending, the 202 body)."""
        raw = self._raw("POST", f"/jobs/{name}", json.dumps({"args": args}).encode())
        sent = time.time()
        async with asyncio.timeout(15):
            response = await self.connection.request(raw)
        if response.status != 202:
            raise RuntimeError(f"submit {name}: {response.status} {response.body[:300]!r}")
        body: dict[str, Any] = json.loads(response.body)
        return sent, body

    async def wait(self, job_id: str, seconds: float) -> dict[str, Any]:
        """`GET /jobs/{id}?wait=seconds`; the job must then be `succeeded`."""
        async with asyncio.timeout(seconds + 10):
            response = await self.connection.request(
                self._raw("GET", f"/jobs/{job_id}?wait={seconds:g}")
            )
        body: dict[str, Any] = json.loads(response.body)
        if response.status != 200 or body.get("status") != "succeeded":
            raise RuntimeError(f"job {job_id}: {response.status} {response.body[:300]!r}")
        return body

    async def close(self) -> None:
        await self.connection.close()


async def wait_ready(prober: Prober, worker: Child, timeout_seconds: float = 60) -> None:
    """Return once the worker has run a job."""
    _, job = await prober.submit("echo", ECHO_ARGS)
    deadline = time.monotonic() + timeout_seconds
    while True:
        worker.check_alive()
        try:
            await prober.wait(job["id"], 5)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise


async def pickup_latencies(prober: Prober, samples: int) -> list[float]:
    """Seconds from sending the submit to the job function starting, one job at a time."""
    latencies = []
    for _ in range(samples):
        # Uniform gaps cover every phase of a polling worker's cycle.
        await asyncio.sleep(random.uniform(0.05, 0.55))  # noqa: S311 (not cryptography)
        sent, job = await prober.submit("bench_stamp", {})
        done = await prober.wait(job["id"], 10)
        latencies.append(done["result"]["started_unix"] - sent)
    return latencies


async def longpoll_delays(prober: Prober, samples: int) -> tuple[list[float], int]:
    """Seconds from a job's `finished_at` to the long-polling client having the answer."""
    delays, late = [], 0
    for _ in range(samples):
        await asyncio.sleep(random.uniform(0.05, 0.3))  # noqa: S311 (not cryptography)
        _, job = await prober.submit("bench_stamp", {"sleep_ms": LONGPOLL_JOB_MS})
        asked = time.time()
        done = await prober.wait(job["id"], 10)
        seen = time.time()
        finished = datetime.fromisoformat(done["finished_at"]).timestamp()
        if asked >= finished:
            late += 1
            continue
        delays.append(seen - finished)
    return delays, late


async def drain(context: Context, port: int) -> tuple[float, int, int]:
    """(seconds, jobs succeeded, jobs submitted) for one end-to-end drain."""
    sizes = context.sizes
    requests = math.ceil(sizes.drain_jobs / sizes.batch_size)
    spec = LoadSpec(
        port=port,
        path="/jobs/echo/batch",
        body=batch_body(sizes.batch_size),
        headers=context.auth_headers(),
        connections=min(sizes.batch_connections, requests),
        requests=requests,
        seconds=None,
        warmup_seconds=0,
    )
    redis: Redis = Redis.from_url(context.redis_url)
    try:
        loading = asyncio.create_task(run_load(spec))
        started = time.monotonic()
        while time.monotonic() - started < sizes.drain_deadline_seconds:
            if loading.done() and not await pending_jobs(redis):
                break
            await asyncio.sleep(0.01)
        finished_unix = time.time()
        summary = await loading
    finally:
        await redis.aclose()
    check_load(summary, 202, "drain: POST /jobs/echo/batch")
    succeeded = await count_jobs(context.database_url, context.tenant_id, "succeeded")
    return finished_unix - summary["started_unix"], succeeded, requests * sizes.batch_size


async def pending_jobs(redis: Redis) -> int:
    queued: int = await redis.zcard(queue_key("default"))
    scheduled: int = await redis.zcard(SCHEDULED_SET)
    return queued + scheduled


def start_worker(context: Context, processes: int) -> Child:
    """A `jobgate worker` process (schedules off), not yet ready: see `wait_ready`."""
    env = context.jobgate_env(JOBGATE_WORKER_RUN_SCHEDULES="false")
    argv = [sys.executable, "-m", "cli", "worker", "--processes", str(processes)]
    return spawn(f"jobgate-worker-{processes}p", argv, env=env, log_dir=context.log_dir)


async def _timed_drain(context: Context, port: int, results: Results, figure: Figure) -> None:
    await reset_jobs(context.database_url, context.redis_url)
    seconds, succeeded, submitted = await drain(context, port)
    results.record(figure, succeeded / seconds)
    if succeeded < submitted:
        results.note(
            f"jobgate drain ({figure.value}): only {succeeded:,} of {submitted:,} jobs succeeded"
            f" within {seconds:.1f} s (deadline {context.sizes.drain_deadline_seconds:g} s)."
        )


async def measure_run_path(context: Context, gateway: Child, results: Results) -> None:
    """Pickup, long-poll, drain and footprint with one worker process; then a drain with two
    (`jobgate worker --processes 2`, as Celery's prefork baseline runs two)."""
    assert gateway.port is not None  # noqa: S101
    await reset_jobs(context.database_url, context.redis_url)
    worker = start_worker(context, 1)
    prober = Prober(context, gateway.port)
    async with running(worker):
        try:
            await wait_ready(prober, worker)
            latencies = await pickup_latencies(prober, context.sizes.pickup_samples)
            results.record(Figure.PICKUP_P50_MS, percentile(latencies, 0.5) * 1000)
            results.record(Figure.PICKUP_P99_MS, percentile(latencies, 0.99) * 1000)
            delays, late = await longpoll_delays(prober, context.sizes.longpoll_samples)
            results.record(Figure.LONGPOLL_P50_MS, percentile(delays, 0.5) * 1000)
            if late:
                results.note(f"Long-poll: {late} samples dropped (GET sent after the job ended).")
        finally:
            await prober.close()
        await _timed_drain(context, gateway.port, results, Figure.DRAIN_JOBS_S)
        results.record(Figure.GATEWAY_RSS_MB, gateway.rss_mb())
        results.record(Figure.WORKER_RSS_MB, worker.rss_mb())
    await reset_jobs(context.database_url, context.redis_url)
    workers = start_worker(context, 2)
    prober = Prober(context, gateway.port)
    async with running(workers):
        try:
            await wait_ready(prober, workers)
        finally:
            await prober.close()
        await _timed_drain(context, gateway.port, results, Figure.DRAIN_2PROC_JOBS_S)
