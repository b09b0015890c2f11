"""Baseline 1: the bare endpoint (`bench.baselines.bare_app`) under the same load as jobgate.

Its loads alternate with jobgate's (`bench.jobgate_submit.measure_submit`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bench.context import Context, single_submit_load
from bench.load import LoadSpec
from bench.processes import Child, free_port, running, spawn, uvicorn_argv, wait_http_ready
from bench.results import Figure
from shared.db import libpq_url

FIGURES = (Figure.BARE_RPS, Figure.BARE_P50_MS, Figure.BARE_P99_MS, Figure.BARE_RSS_MB)


@contextlib.asynccontextmanager
async def bare_endpoint(context: Context) -> AsyncIterator[Child]:
    """The bare endpoint, run as jobgate's gateway is, on a free loopback port."""
    port = free_port()
    env = context.jobgate_env(
        BENCH_BARE_DATABASE_URL=libpq_url(context.database_url),
        BENCH_BARE_REDIS_URL=context.redis_url,
    )
    argv = uvicorn_argv("bench.baselines.bare_app:app", port, http="httptools")
    child = spawn("bare-endpoint", argv, env=env, log_dir=context.log_dir, port=port)
    async with running(child):
        await wait_http_ready(child, "/healthz")
        yield child


def submit_spec(context: Context, bare: Child, seconds: float) -> LoadSpec:
    """The bare endpoint's share of the submit load (no key: it has no authentication)."""
    assert bare.port is not None  # noqa: S101
    headers = {"Content-Type": "application/json"}
    return single_submit_load(context, bare.port, path="/jobs", headers=headers, seconds=seconds)
