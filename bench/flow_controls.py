"""`python -m bench.flow_controls`: what each flow control costs the submit and pickup paths.

Four job types do the same no-op work (`bench.contracts`): one without controls (the
baseline, 1.00) and one for each control a job type can declare: a start deadline, a
concurrency key (limit 1,000, so it never makes a job wait: the figure is the bookkeeping's
cost, not the waiting) and a rate limit (a million a second, likewise). Each is measured on
three paths, with the same sizes and clock points for every type:

- submit: `POST /jobs/<type>` at `--connections` for `--submit-seconds` after a warm-up, no
  worker running (the bench's load generator, in its own process; its CPU is reported);
- pickup: one job at a time on an idle `jobgate worker`, from the client's clock just before
  it sends the submit to the job function's first line (`bench.jobs`), random gaps between;
- drain: `--drain-jobs` jobs submitted in batches of 100 (keys cycling over 100 values) while
  the worker runs, timed from the first request until PostgreSQL shows every one `succeeded`.

Rounds alternate (each round visits the types in a rotated order), each figure is the median
of its rounds with the min-max beside it, and the load average is recorded per round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from bench.config import Sizes
from bench.context import Context, check_load
from bench.contracts import FLOW_TYPES
from bench.jobgate_run import Prober, start_worker, wait_ready
from bench.load import LoadSpec, run_load
from bench.processes import Child, running
from bench.report import machine_description
from bench.services import (
    connect,
    create_bench_tenant,
    drop_database,
    endpoints,
    flush_redis,
    recreate_database,
    reset_jobs,
)
from bench.stats import percentile
from bench.suite import jobgate_gateway, progress

KEYS = 100
"""Distinct concurrency keys in a drain's batches."""


@dataclass(frozen=True)
class FlowSizes:
    """The sizes of one run; `--quick` is a smoke run."""

    rounds: int = 3
    submit_seconds: float = 3.0
    warmup_seconds: float = 0.5
    connections: int = 50
    pickup_samples: int = 30
    """Per type and round (so 90 per type at the defaults)."""
    drain_jobs: int = 4_000
    batch_size: int = 100
    batch_connections: int = 8


QUICK = FlowSizes(
    rounds=1,
    submit_seconds=0.5,
    warmup_seconds=0.2,
    connections=5,
    pickup_samples=3,
    drain_jobs=200,
    batch_size=20,
    batch_connections=2,
)


@dataclass
class Measures:
    """One job type's figures, a value per round (pickup: every sample)."""

    submit_rps: list[float] = field(default_factory=list)
    submit_p99_ms: list[float] = field(default_factory=list)
    pickup_seconds: list[float] = field(default_factory=list)
    drain_jobs_s: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)


def _body(key: str) -> bytes:
    return json.dumps({"args": {"key": key}}).encode()


def _batch_body(size: int) -> bytes:
    return json.dumps({"jobs": [{"args": {"key": f"k{i % KEYS}"}} for i in range(size)]}).encode()


async def _submit_round(context: Context, port: int, sizes: FlowSizes, name: str) -> dict[str, Any]:
    spec = LoadSpec(
        port=port,
        path=f"/jobs/{name}",
        body=_body("k1"),
        headers=context.auth_headers(),
        connections=sizes.connections,
        seconds=sizes.submit_seconds,
        warmup_seconds=sizes.warmup_seconds,
    )
    summary = await run_load(spec)
    check_load(summary, 202, f"POST /jobs/{name}")
    return summary


_SUCCEEDED_SQL = (
    "SELECT count(*) FROM job WHERE tenant_id = $1 AND name = $2 AND status = 'succeeded'"
)


async def _drain(context: Context, port: int, sizes: FlowSizes, name: str) -> float:
    """Jobs per second from the first batch sent until PostgreSQL shows every one `succeeded`.

    The clock stops on the rows, the ground truth, not on an empty Redis queue: the gateway
    hands a batch to Redis after committing it, so a queue can be empty for a moment while
    rows are still on their way to it.
    """
    requests = math.ceil(sizes.drain_jobs / sizes.batch_size)
    spec = LoadSpec(
        port=port,
        path=f"/jobs/{name}/batch",
        body=_batch_body(sizes.batch_size),
        headers=context.auth_headers(),
        connections=min(sizes.batch_connections, requests),
        requests=requests,
        seconds=None,
        warmup_seconds=0,
    )
    async with connect(context.database_url) as connection:
        before: int = await connection.fetchval(_SUCCEEDED_SQL, context.tenant_id, name)
        wanted = before + requests * sizes.batch_size
        loading = asyncio.create_task(run_load(spec))
        deadline = time.monotonic() + 120
        while await connection.fetchval(_SUCCEEDED_SQL, context.tenant_id, name) < wanted:
            if time.monotonic() > deadline:
                loading.cancel()
                raise RuntimeError(f"drain of {name}: not all succeeded within 120 s")
            await asyncio.sleep(0.02)
        finished = time.time()
    summary = await loading
    check_load(summary, 202, f"POST /jobs/{name}/batch")
    started: float = summary["started_unix"]
    return requests * sizes.batch_size / (finished - started)


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


async def measure(context: Context, sizes: FlowSizes) -> tuple[dict[str, Measures], list[float]]:
    """Every type's figures over `sizes.rounds` alternating rounds; the load average per round."""
    names = [job_type.name for job_type in FLOW_TYPES]
    measures = {name: Measures() for name in names}
    loads: list[float] = []
    async with jobgate_gateway(context) as gateway:
        assert gateway.port is not None  # noqa: S101
        try:
            await _rounds(context, sizes, gateway, measures, loads)
        except Exception:
            print(f"gateway log (end):\n{gateway.log_tail(4000)}", file=sys.stderr)
            raise
    return measures, loads


async def _rounds(
    context: Context,
    sizes: FlowSizes,
    gateway: Child,
    measures: dict[str, Measures],
    loads: list[float],
) -> None:
    assert gateway.port is not None  # noqa: S101
    names = list(measures)
    for number in range(sizes.rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        progress(f"flow controls: round {number + 1} of {sizes.rounds} ({', '.join(order)})")
        loads.append(_load_average())
        for name in order:
            summary = await _submit_round(context, gateway.port, sizes, name)
            measures[name].submit_rps.append(summary["rps"])
            measures[name].submit_p99_ms.append(summary["p99_ms"])
            measures[name].client_cpu.append(summary["client_cpu"])
        # The submitted jobs are not run: gone from PostgreSQL too, or the worker's
        # reconciler would rightly put them back on the queue, ahead of the probes.
        await reset_jobs(context.database_url, context.redis_url)
        worker = start_worker(context, 1)
        async with running(worker):
            async with _prober(context, gateway.port) as prober:
                await wait_ready(prober, worker)
            for name in order:
                async with _prober(context, gateway.port) as prober:
                    measures[name].pickup_seconds += await _pickups(prober, name, sizes)
                measures[name].drain_jobs_s.append(await _drain(context, gateway.port, sizes, name))
                m = measures[name]
                progress(
                    f"  {name}: submit {m.submit_rps[-1]:,.0f} req/s,"
                    f" drain {m.drain_jobs_s[-1]:,.0f} jobs/s"
                )
        await reset_jobs(context.database_url, context.redis_url)


@contextlib.asynccontextmanager
async def _prober(context: Context, port: int) -> AsyncIterator[Prober]:
    """A client on a fresh connection: the gateway closes one left idle for 5 s (a drain)."""
    prober = Prober(context, port)
    try:
        yield prober
    finally:
        await prober.close()


async def _pickups(prober: Prober, name: str, sizes: FlowSizes) -> list[float]:
    latencies = []
    for sample in range(sizes.pickup_samples):
        await asyncio.sleep(0.05 + 0.5 * ((sample * 0.618) % 1))  # gaps spread over a poll cycle
        sent, job = await prober.submit(name, {"key": f"k{sample % KEYS}"})
        done = await prober.wait(job["id"], 10)
        latencies.append(done["result"]["started_unix"] - sent)
    return latencies


def _spread(values: Sequence[float], digits: int = 0) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def render(measures: dict[str, Measures], loads: Sequence[float], sizes: FlowSizes) -> str:
    """One table: a row per job type, ratios against the type without controls."""
    plain = measures[FLOW_TYPES[0].name]
    header = (
        "| job type | control | submit req/s | x plain | submit p99 ms | pickup p50 ms "
        "| pickup p99 ms | drain jobs/s | x plain |"
    )
    lines = [header, "|" + "---|" * 9]
    for job_type in FLOW_TYPES:
        m = measures[job_type.name]
        submit_ratio = statistics.median(m.submit_rps) / statistics.median(plain.submit_rps)
        drain_ratio = statistics.median(m.drain_jobs_s) / statistics.median(plain.drain_jobs_s)
        lines.append(
            f"| {job_type.name} | {job_type.description} | {_spread(m.submit_rps)} "
            f"| {submit_ratio:.2f} | {_spread(m.submit_p99_ms, 1)} "
            f"| {percentile(m.pickup_seconds, 0.5) * 1000:.1f} "
            f"| {percentile(m.pickup_seconds, 0.99) * 1000:.1f} "
            f"| {_spread(m.drain_jobs_s)} | {drain_ratio:.2f} |"
        )
    cpu = max(max(m.client_cpu) for m in measures.values())
    busy = max(loads)
    notes = [
        f"- {sizes.rounds} alternating rounds; medians (min-max). Submit: {sizes.connections} "
        f"connections, {sizes.submit_seconds:g} s per type and round after a "
        f"{sizes.warmup_seconds:g} s warm-up. Pickup: {sizes.pickup_samples * sizes.rounds} "
        f"samples per type. Drain: {sizes.drain_jobs:,} jobs per type and round, one worker.",
        f"- Load average (1 min) at each round's start: {', '.join(f'{x:.2f}' for x in loads)}"
        + (" — WARNING: the machine was busy (above its 2 cores)" if busy > 2 else ""),
        f"- Load generator CPU, highest of any submit load: {cpu:.0%} of one core.",
    ]
    return "\n".join([*lines, "", *notes])


@contextlib.asynccontextmanager
async def _context(sizes: FlowSizes, database_name: str) -> AsyncIterator[Context]:
    async with contextlib.AsyncExitStack() as stack:
        servers = await stack.enter_async_context(endpoints())
        stack.push_async_callback(flush_redis, servers.redis_url)
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobgate-flow-")))
        database_url = await recreate_database(servers.server_url, database_name)
        stack.push_async_callback(drop_database, servers.server_url, database_name)
        tenant_id, token = await create_bench_tenant(database_url, servers.redis_url)
        yield Context(
            database_url=database_url,
            redis_url=servers.redis_url,
            tenant_id=tenant_id,
            token=token,
            sizes=Sizes(),
            log_dir=log_dir,
        )


async def _run(sizes: FlowSizes, database_name: str) -> str:
    async with _context(sizes, database_name) as context:
        measures, loads = await measure(context, sizes)
    return render(measures, loads, sizes)


def main(argv: list[str] | None = None) -> int:
    """Run the flow-control bench and print its table; `--results` also writes it to a file."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.flow_controls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (a smoke run).")
    parser.add_argument("--database-name", default="jobgate_bench_flow")
    parser.add_argument("--results", type=Path, help="Also write the table here.")
    for name in ("rounds", "submit_seconds", "pickup_samples", "drain_jobs"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, metavar="N")
    options = parser.parse_args(argv)
    sizes = QUICK if options.quick else FlowSizes()
    overrides = {
        name: type(getattr(sizes, name))(value)
        for name in ("rounds", "submit_seconds", "pickup_samples", "drain_jobs")
        if (value := getattr(options, name)) is not None
    }
    sizes = FlowSizes(**{**sizes.__dict__, **overrides})
    table = uvloop.run(_run(sizes, options.database_name))
    print(table, flush=True)
    if options.results:
        options.results.write_text(
            "# Flow controls: cost on the submit and pickup paths\n\n"
            f"Command: `python -m bench.flow_controls {' '.join(sys.argv[1:])}`\n\n"
            f"## Machine\n\n{machine_description()}\n\n## Table\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
