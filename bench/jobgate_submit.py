"""jobgate's submit path: single and batch throughput, and how both scale with the table's size.

Single submits take turns with the bare endpoint's (baseline 1). No worker runs during these
loads: each server gets the same two cores (the other one idle), shared only with PostgreSQL,
Redis and the load generator.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.baselines import bare as bare_baseline
from bench.context import Context, batch_body, check_load, single_submit_load
from bench.load import LoadSpec, run_load
from bench.processes import Child
from bench.results import Figure, Results
from bench.services import flush_redis, reset_jobs, seed_jobs_to

SUBMIT_FIGURES = (
    *bare_baseline.FIGURES,
    Figure.SUBMIT_RPS,
    Figure.SUBMIT_P50_MS,
    Figure.SUBMIT_P99_MS,
    Figure.BATCH_JOBS_S,
)
SCALING_FIGURES = (Figure.SCALE_SMALL_COST_MS, Figure.SCALE_LARGE_COST_MS, Figure.LIST_P50_MS)


def _single_submit(context: Context, gateway: Child, seconds: float) -> LoadSpec:
    assert gateway.port is not None  # noqa: S101
    return single_submit_load(
        context, gateway.port, path="/jobs/echo", headers=context.auth_headers(), seconds=seconds
    )


async def _submit_load(context: Context, gateway: Child, seconds: float) -> dict[str, Any]:
    summary = await run_load(_single_submit(context, gateway, seconds))
    check_load(summary, 202, "POST /jobs/echo")
    return summary


async def measure_submit(context: Context, gateway: Child, bare: Child, results: Results) -> None:
    """Single submits to the bare endpoint and to jobgate in alternating rounds, then batches.

    Each system's figures are the medians of its rounds: on a shared VM the speed drifts
    noticeably within minutes, which one load after the other would read as a ratio.
    """
    sizes = context.sizes
    seconds = sizes.submit_seconds / sizes.submit_rounds
    await reset_jobs(context.database_url, context.redis_url)
    bare_loads, jobgate_loads = [], []
    for _ in range(sizes.submit_rounds):
        bare_load = await run_load(bare_baseline.submit_spec(context, bare, seconds))
        check_load(bare_load, 202, "bare endpoint")
        bare_loads.append(bare_load)
        jobgate_loads.append(await _submit_load(context, gateway, seconds))
    for loads, (rps, p50, p99) in (
        (bare_loads, (Figure.BARE_RPS, Figure.BARE_P50_MS, Figure.BARE_P99_MS)),
        (jobgate_loads, (Figure.SUBMIT_RPS, Figure.SUBMIT_P50_MS, Figure.SUBMIT_P99_MS)),
    ):
        results.record(rps, statistics.median(load["rps"] for load in loads))
        results.record(p50, statistics.median(load["p50_ms"] for load in loads))
        results.record(p99, statistics.median(load["p99_ms"] for load in loads))
    results.record(Figure.BARE_RSS_MB, bare.rss_mb())
    for name, loads in (("the bare runs", bare_loads), ("jobgate's submit runs", jobgate_loads)):
        cpu = statistics.median(load["client_cpu"] for load in loads)
        results.note(f"Load generator CPU during {name}: {cpu:.0%} of one core.")
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
    """Submit cost with a small and a large job table; `GET /jobs` latency on the large one.

    In alternating rounds (as many as the submit stage's): each empties the table, fills it to
    the small size and loads it, then fills it to the large size and loads it again. Both sizes
    see the same drift of the VM's speed, and each figure is the median of its rounds.
    """
    sizes = context.sizes
    seconds = sizes.scale_seconds / sizes.submit_rounds
    small_loads, large_loads = [], []
    rows = 0
    for round_number in range(sizes.submit_rounds):
        await reset_jobs(context.database_url, context.redis_url)
        await seed_jobs_to(context.database_url, context.tenant_id, total=sizes.scale_small_rows)
        small_loads.append(await _submit_load(context, gateway, seconds))
        await flush_redis(context.redis_url)
        rows = await seed_jobs_to(
            context.database_url, context.tenant_id, total=sizes.scale_large_rows
        )
        if round_number == 0:
            await _measure_listing(context, gateway, results)
        large_loads.append(await _submit_load(context, gateway, seconds))
    for figure, loads in (
        (Figure.SCALE_SMALL_COST_MS, small_loads),
        (Figure.SCALE_LARGE_COST_MS, large_loads),
    ):
        results.record(figure, 1000 / statistics.median(load["rps"] for load in loads))
    results.note(
        f"Scaling: submit cost = 1000 / (req/s at {sizes.submit_connections} connections), the"
        f" median of {sizes.submit_rounds} alternating rounds; small table"
        f" {sizes.scale_small_rows:,} rows, large {rows:,} rows before each load (GET /jobs: one"
        " connection, default page of 50, newest first)."
    )
    await reset_jobs(context.database_url, context.redis_url)


async def _measure_listing(context: Context, gateway: Child, results: Results) -> None:
    assert gateway.port is not None  # noqa: S101
    listing = await run_load(
        LoadSpec(
            port=gateway.port,
            path="/jobs",
            method="GET",
            headers={"Authorization": f"Bearer {context.token}"},
            connections=1,
            seconds=context.sizes.list_seconds,
            warmup_seconds=context.sizes.warmup_seconds,
        )
    )
    check_load(listing, 200, "GET /jobs")
    results.record(Figure.LIST_P50_MS, listing["p50_ms"])
