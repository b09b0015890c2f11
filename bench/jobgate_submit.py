"""jobgate's submit path: single and batch throughput, and how both scale with the table's size.

No worker runs during these loads (nor during the bare endpoint's): both servers get the same
two cores, shared only with PostgreSQL, Redis and the load generator.
"""

from __future__ import annotations

from typing import Any

from bench.context import ECHO_BODY, Context, batch_body, check_load
from bench.load import LoadSpec, run_load
from bench.processes import Child
from bench.results import Figure, Results
from bench.services import flush_redis, reset_jobs, seed_jobs_to

SUBMIT_FIGURES = (
    Figure.SUBMIT_RPS,
    Figure.SUBMIT_P50_MS,
    Figure.SUBMIT_P99_MS,
    Figure.BATCH_JOBS_S,
)
SCALING_FIGURES = (Figure.SCALE_SMALL_COST_MS, Figure.SCALE_LARGE_COST_MS, Figure.LIST_P50_MS)


def _single_submit(context: Context, gateway: Child, seconds: float) -> LoadSpec:
    assert gateway.port is not None  # noqa: S101
    return LoadSpec(
        port=gateway.port,
        path="/jobs/echo",
        body=ECHO_BODY,
        headers=context.auth_headers(),
        connections=context.sizes.submit_connections,
        seconds=seconds,
        warmup_seconds=context.sizes.warmup_seconds,
    )


async def _submit_load(context: Context, gateway: Child, seconds: float) -> dict[str, Any]:
    summary = await run_load(_single_submit(context, gateway, seconds))
    check_load(summary, 202, "POST /jobs/echo")
    return summary


async def measure_submit(context: Context, gateway: Child, results: Results) -> None:
    """Single submit at N connections (as the bare endpoint), then batches."""
    sizes = context.sizes
    await reset_jobs(context.database_url, context.redis_url)
    single = await _submit_load(context, gateway, sizes.submit_seconds)
    results.record(Figure.SUBMIT_RPS, single["rps"])
    results.record(Figure.SUBMIT_P50_MS, single["p50_ms"])
    results.record(Figure.SUBMIT_P99_MS, single["p99_ms"])
    results.note(
        f"Load generator CPU during jobgate's submit run: {single['client_cpu']:.0%} of one core."
    )
    await reset_jobs(context.database_url, context.redis_url)
    assert gateway.port is not None  # noqa: S101
    batch = await run_load(
        LoadSpec(
            port=gateway.port,
            path="/jobs/echo/batch",
            body=batch_body(sizes.batch_size),
            headers=context.auth_headers(),
            connections=sizes.batch_connections,
            seconds=sizes.batch_seconds,
            warmup_seconds=sizes.warmup_seconds,
        )
    )
    check_load(batch, 202, "POST /jobs/echo/batch")
    results.record(Figure.BATCH_JOBS_S, batch["rps"] * sizes.batch_size)


async def measure_scaling(context: Context, gateway: Child, results: Results) -> None:
    """Submit cost with a small and a large job table; `GET /jobs` latency on the large one."""
    sizes = context.sizes
    await reset_jobs(context.database_url, context.redis_url)
    await seed_jobs_to(context.database_url, context.tenant_id, total=sizes.scale_small_rows)
    small = await _submit_load(context, gateway, sizes.scale_seconds)
    results.record(Figure.SCALE_SMALL_COST_MS, 1000 / small["rps"])
    await flush_redis(context.redis_url)
    rows = await seed_jobs_to(context.database_url, context.tenant_id, total=sizes.scale_large_rows)
    assert gateway.port is not None  # noqa: S101
    listing = await run_load(
        LoadSpec(
            port=gateway.port,
            path="/jobs",
            method="GET",
            headers={"Authorization": f"Bearer {context.token}"},
            connections=1,
            seconds=sizes.list_seconds,
            warmup_seconds=sizes.warmup_seconds,
        )
    )
    check_load(listing, 200, "GET /jobs")
    results.record(Figure.LIST_P50_MS, listing["p50_ms"])
    large = await _submit_load(context, gateway, sizes.scale_seconds)
    results.record(Figure.SCALE_LARGE_COST_MS, 1000 / large["rps"])
    results.note(
        f"Scaling: submit cost = 1000 / (req/s at {sizes.submit_connections} connections); "
        f"small table {sizes.scale_small_rows:,} rows, large {rows:,} rows before each load "
        f"(GET /jobs: one connection, default page of 50, newest first)."
    )
    await reset_jobs(context.database_url, context.redis_url)
