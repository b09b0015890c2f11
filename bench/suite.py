"""The whole run: servers, a fresh database, each stage in turn, the table.

A stage that fails marks its figures as errors and the run goes on, so the table always has
every row. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path

from redis.asyncio import Redis

from bench import jobgate_run, jobgate_submit
from bench.baselines import arq_raw, bare, celery_setup
from bench.config import Sizes
from bench.context import Context
from bench.processes import Child, free_port, running, spawn, uvicorn_argv, wait_http_ready
from bench.results import Figure, Results
from bench.services import (
    connect,
    create_bench_tenant,
    drop_database,
    endpoints,
    flush_redis,
    recreate_database,
)

JOBGATE_FIGURES = (
    *jobgate_submit.SUBMIT_FIGURES,
    *jobgate_submit.SCALING_FIGURES,
    *jobgate_run.FIGURES,
)


def progress(message: str) -> None:
    """One line of progress on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def stage(
    results: Results, name: str, figures: Sequence[Figure], work: Awaitable[None]
) -> None:
    """Run one stage; if it fails, its unmeasured figures say so and the run goes on."""
    progress(f"{name}...")
    started = time.monotonic()
    try:
        await work
    except Exception as exc:  # one broken stage must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        results.miss(figures, f"error ({name})")
        results.note(f"{name} failed: {type(exc).__name__}: {first_line[:200]}")
    progress(f"{name} done in {time.monotonic() - started:.1f} s")


@contextlib.asynccontextmanager
async def jobgate_gateway(context: Context) -> AsyncIterator[Child]:
    """jobgate's gateway, run as `jobgate dev` runs it, on a free loopback port."""
    port = free_port()
    argv = uvicorn_argv("gateway.main:app", port)
    env = context.jobgate_env()
    child = spawn("jobgate-gateway", argv, env=env, log_dir=context.log_dir, port=port)
    async with running(child):
        await wait_http_ready(child, "/healthz")
        yield child


async def _server_versions(database_url: str, redis_url: str) -> str:
    async with connect(database_url) as connection:
        postgres = await connection.fetchval("SHOW server_version")
    client: Redis = Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return f"PostgreSQL {postgres}, Redis {info.get('redis_version', '?')}"


async def _measure_submit(context: Context, gateway: Child, results: Results) -> None:
    async with bare.bare_endpoint(context) as bare_server:
        await jobgate_submit.measure_submit(context, gateway, bare_server, results)


async def _jobgate_stages(context: Context, results: Results) -> None:
    try:
        async with jobgate_gateway(context) as gateway:
            await stage(
                results,
                "submit: bare endpoint and jobgate, taking turns",
                jobgate_submit.SUBMIT_FIGURES,
                _measure_submit(context, gateway, results),
            )
            await stage(
                results,
                "jobgate scaling",
                jobgate_submit.SCALING_FIGURES,
                jobgate_submit.measure_scaling(context, gateway, results),
            )
            await stage(
                results,
                "jobgate worker",
                jobgate_run.FIGURES,
                jobgate_run.measure_run_path(context, gateway, results),
            )
    except Exception as exc:  # the gateway did not start: every jobgate figure is missing
        traceback.print_exc(file=sys.stderr)
        results.miss(JOBGATE_FIGURES, "error (gateway)")
        results.note(f"jobgate gateway failed: {type(exc).__name__}: {str(exc)[:200]}")


async def run_suite(sizes: Sizes, *, database_name: str, skip_celery: str | None) -> Results:
    """Measure everything; the database is created at the start and dropped at the end."""
    results = Results()
    async with contextlib.AsyncExitStack() as stack:
        servers = await stack.enter_async_context(endpoints())
        stack.push_async_callback(flush_redis, servers.redis_url)
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jobgate-bench-")))
        progress(f"servers ({servers.origin}): {servers.server_url} / {servers.redis_url}")
        database_url = await recreate_database(servers.server_url, database_name)
        stack.push_async_callback(drop_database, servers.server_url, database_name)
        tenant_id, token = await create_bench_tenant(database_url, servers.redis_url)
        context = Context(
            database_url=database_url,
            redis_url=servers.redis_url,
            tenant_id=tenant_id,
            token=token,
            sizes=sizes,
            log_dir=log_dir,
        )
        versions = await _server_versions(database_url, servers.redis_url)
        results.note(f"Servers ({servers.origin}): {versions}, on loopback.")
        await _jobgate_stages(context, results)
        arq_work = arq_raw.measure_raw_arq(context, results)
        await stage(results, "raw ARQ", arq_raw.FIGURES, arq_work)
        if skip_celery:
            results.miss(celery_setup.FIGURES, f"skipped ({skip_celery})")
        else:
            celery_work = celery_setup.measure_celery(context, results)
            await stage(results, "Celery", celery_setup.FIGURES, celery_work)
    return results
