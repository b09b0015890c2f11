"""Scale-out: 2 gateway and 3 worker processes that share nothing but PostgreSQL and Redis.

300 jobs submitted through both gateways all succeed, each run exactly once (`record_run`
leaves one line per run in its worker's own file), every worker takes part, a job submitted
through one gateway reads the same through the other, and each worker's liveness probe
(`python -m worker.heartbeat`) says alive while it runs and dead once it has stopped.
The processes are started as in production (`uvicorn gateway.main:app`, `jobgate worker`),
with the bench's process helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.processes import Child, free_port, spawn, stop, uvicorn_argv, wait_http_ready
from shared.models import Job
from shared.settings import Settings
from tests.factories import auth, make_tenant
from tests.polling import poll_until

pytestmark = pytest.mark.slow

JOBS = 300
GATEWAYS = 2
WORKERS = 3
CLIENTS = 20
# Each worker runs at most 10 jobs of 100 ms at once (100 jobs/s): no single worker can keep
# up with the submissions alone, so all three must take part.
WORKER_MAX_JOBS = 10
JOB_SLEEP_MS = 100
MODULES = {
    "JOBGATE_CONTRACT_MODULES": "tests.e2e.run_log_contract",
    "JOBGATE_JOB_MODULES": "tests.e2e.run_log_job",
}


def process_env(settings: Settings, **variables: str) -> dict[str, str]:
    return {
        **os.environ,
        "JOBGATE_ENV": "test",
        "JOBGATE_DATABASE_URL": settings.require_database_url(),
        "JOBGATE_REDIS_URL": settings.require_redis_url(),
        "JOBGATE_LOG_LEVEL": "WARNING",
        # Five processes share the server with the rest of the suite: small pools, no overflow.
        "JOBGATE_DB_POOL_SIZE": "5",
        "JOBGATE_DB_MAX_OVERFLOW": "0",
        "JOBGATE_DB_POOL_TIMEOUT_SECONDS": "30",
        **MODULES,
        **variables,
    }


@dataclass
class Cluster:
    """The running processes, and an HTTP client for each gateway."""

    gateways: list[httpx.AsyncClient]
    workers: list[Child]


def spawn_gateway(settings: Settings, number: int, log_dir: Path) -> Child:
    port = free_port()
    return spawn(
        f"gateway-{number}",
        uvicorn_argv("gateway.main:app", port),
        env=process_env(settings),
        log_dir=log_dir,
        port=port,
    )


def spawn_worker(settings: Settings, number: int, log_dir: Path) -> Child:
    """`jobgate worker`, with its heartbeat file next to its log (`worker-N.heartbeat`)."""
    return spawn(
        f"worker-{number}",
        [sys.executable, "-m", "cli", "worker", "--queue", "default"],
        env=process_env(
            settings,
            JOBGATE_WORKER_MAX_JOBS=str(WORKER_MAX_JOBS),
            JOBGATE_WORKER_POLL_DELAY_SECONDS="0.05",
            JOBGATE_WORKER_RUN_SCHEDULES="false",
            JOBGATE_WORKER_METRICS_PORT="0",  # three on one host: no port to share
            JOBGATE_WORKER_HEARTBEAT_FILE=str(log_dir / f"worker-{number}.heartbeat"),
            JOBGATE_LOG_LEVEL="INFO",  # start and stop lines, for a failure's message
        ),
        log_dir=log_dir,
    )


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    """All processes started at once (their imports take most of the time), then awaited."""
    gateways = [spawn_gateway(settings, number, tmp_path) for number in range(GATEWAYS)]
    workers = [spawn_worker(settings, number, tmp_path) for number in range(WORKERS)]
    try:
        await asyncio.gather(*(wait_http_ready(child, "/readyz", 60) for child in gateways))
        for worker in workers:
            await poll_until(
                functools.partial(has_started, worker), timeout=60, what=f"{worker.name} started"
            )
            worker.check_alive()
        async with contextlib.AsyncExitStack() as clients:
            yield Cluster(
                gateways=[
                    await clients.enter_async_context(
                        httpx.AsyncClient(base_url=f"http://127.0.0.1:{child.port}", timeout=10)
                    )
                    for child in gateways
                ],
                workers=workers,
            )
    finally:
        await asyncio.gather(*(stop(child) for child in [*gateways, *workers]))


def heartbeat(child: Child) -> Path:
    return child.log_path.with_suffix(".heartbeat")


def is_running(child: Child) -> bool:
    return child.process.poll() is None


def has_started(worker: Child) -> bool:
    """Its heartbeat is there (or it has died: `check_alive` then says why)."""
    return heartbeat(worker).exists() or not is_running(worker)


def probe(child: Child) -> int:
    """The liveness probe the worker image runs (Dockerfile.worker, deploy/k8s/worker.yaml)."""
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "worker.heartbeat", str(heartbeat(child))],
        capture_output=True,
        timeout=10,
        check=False,
    ).returncode


async def submit_all(
    gateways: Sequence[httpx.AsyncClient], tokens: Sequence[str], run_dir: Path
) -> list[tuple[int, int, str]]:
    """Submit JOBS jobs from CLIENTS concurrent clients, alternating gateways and tenants.

    Returns (gateway index, tenant index, job id) for each.
    """
    submitted: list[tuple[int, int, str]] = []

    async def one_client(number: int) -> None:
        for i in range(number, JOBS, CLIENTS):
            gateway, tenant = i % len(gateways), (i // len(gateways)) % len(tokens)
            response = await gateways[gateway].post(
                "/jobs/record_run",
                json={"args": {"log_dir": str(run_dir), "sleep_ms": JOB_SLEEP_MS}},
                headers=auth(tokens[tenant]),
            )
            assert response.status_code == 202, response.text
            submitted.append((gateway, tenant, response.json()["id"]))

    await asyncio.gather(*(one_client(number) for number in range(CLIENTS)))
    return submitted


async def count_succeeded(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        result = await session.execute(select(func.count()).where(Job.status == "succeeded"))
        return int(result.scalar_one())


@pytest.mark.timeout(150)  # a bound for a hang; it takes ~20 s on an idle machine
async def test_three_hundred_jobs_over_two_gateways_and_three_workers_run_exactly_once(
    cluster: Cluster,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    gateways, workers = cluster.gateways, cluster.workers
    tokens = [(await make_tenant(sessionmaker, f"scale-{i}"))[1] for i in range(2)]
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    assert [probe(worker) for worker in workers] == [0] * WORKERS

    started = time.monotonic()
    submitted = await submit_all(gateways, tokens, run_dir)
    submit_seconds = time.monotonic() - started
    assert Counter(gateway for gateway, _, _ in submitted) == {0: JOBS // 2, 1: JOBS // 2}

    succeeded = 0

    async def refresh() -> None:
        nonlocal succeeded
        succeeded = await count_succeeded(sessionmaker)

    deadline = time.monotonic() + 30
    while succeeded < JOBS and time.monotonic() < deadline:
        await refresh()
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    assert succeeded == JOBS, f"{succeeded} of {JOBS} succeeded"

    async with sessionmaker() as session:
        rows = await session.execute(
            select(Job.status, Job.attempts, func.count()).group_by(Job.status, Job.attempts)
        )
    assert rows.all() == [("succeeded", 1, JOBS)]

    runs = {path.stem: path.read_text().split() for path in run_dir.glob("*.log")}
    per_job = Counter(job_id for job_ids in runs.values() for job_id in job_ids)
    assert set(per_job) == {job_id for _, _, job_id in submitted}
    assert set(per_job.values()) == {1}, [job for job, count in per_job.items() if count > 1]
    per_worker = {pid: len(job_ids) for pid, job_ids in runs.items()}
    assert set(per_worker) == {str(worker.pid) for worker in workers}, per_worker

    # A job reads the same through the gateway it was not submitted to.
    for gateway, tenant, job_id in submitted[:10]:
        other = gateways[1 - gateway]
        response = await other.get(f"/jobs/{job_id}", headers=auth(tokens[tenant]))
        assert response.status_code == 200
        assert response.json()["status"] == "succeeded"
        assert response.json()["result"]["pid"] in {worker.pid for worker in workers}

    await asyncio.gather(*(stop(worker) for worker in workers))
    exits = [worker.process.returncode for worker in workers]
    assert exits == [0] * WORKERS, "\n".join(worker.log_tail(3000) for worker in workers)
    assert [probe(worker) for worker in workers] == [1] * WORKERS
    print(
        f"scale-out: {JOBS} submits in {submit_seconds:.1f} s, all run in {elapsed:.1f} s,"
        f" runs per worker {sorted(per_worker.values())}"
    )
