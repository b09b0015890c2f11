"""Baseline 1: the bare endpoint (`bench.baselines.bare_app`) under the same load as jobgate."""

from __future__ import annotations

from bench.context import ECHO_BODY, Context, check_load
from bench.load import LoadSpec, run_load
from bench.processes import free_port, running, spawn, uvicorn_argv, wait_http_ready
from bench.results import Figure, Results
from shared.db import libpq_url

FIGURES = (Figure.BARE_RPS, Figure.BARE_P50_MS, Figure.BARE_P99_MS, Figure.BARE_RSS_MB)


async def measure_bare_endpoint(context: Context, results: Results) -> None:
    """Submit throughput and latency of the bare endpoint; its RSS afterwards."""
    port = free_port()
    env = context.jobgate_env(
        BENCH_BARE_DATABASE_URL=libpq_url(context.database_url),
        BENCH_BARE_REDIS_URL=context.redis_url,
    )
    argv = uvicorn_argv("bench.baselines.bare_app:app", port)
    child = spawn("bare-endpoint", argv, env=env, log_dir=context.log_dir, port=port)
    async with running(child):
        await wait_http_ready(child, "/healthz")
        sizes = context.sizes
        summary = await run_load(
            LoadSpec(
                port=port,
                path="/jobs",
                body=ECHO_BODY,
                headers={"Content-Type": "application/json"},
                connections=sizes.submit_connections,
                seconds=sizes.submit_seconds,
                warmup_seconds=sizes.warmup_seconds,
            )
        )
        check_load(summary, 202, "bare endpoint")
        results.record(Figure.BARE_RPS, summary["rps"])
        results.record(Figure.BARE_P50_MS, summary["p50_ms"])
        results.record(Figure.BARE_P99_MS, summary["p99_ms"])
        results.record(Figure.BARE_RSS_MB, child.rss_mb())
        results.note(
            f"Load generator CPU during the bare run: {summary['client_cpu']:.0%} of one core."
        )
