"""Both documented worker commands, `jobgate worker` and `arq worker.WorkerSettings`, as processes.

Each test runs once per command (the `runner` fixture): the same leases, lifecycle, quotas,
cron, presence, metrics and logs whichever one an operator starts. The Redis flush, SIGKILL and
SIGTERM guarantees are run against both in test_redis_loss, test_worker_crash and
test_worker_shutdown.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import load_contracts
from shared.models import Job
from shared.presence import WorkerPresence, alive_workers
from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker, WorkerProcess
from tests.factories import (
    auth,
    make_tenant,
    max_overlap,
    set_tenant_limits,
    submit,
    wait_for_status,
)
from tests.polling import poll_job

# Each test starts worker processes, whose start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(150)


async def _announced(redis: ArqRedis, *, timeout: float = 15) -> WorkerPresence:
    """The one worker process that announced itself in Redis."""
    deadline = time.monotonic() + timeout
    while not (workers := await alive_workers(redis)):
        assert time.monotonic() < deadline, "no worker announced itself"
        await asyncio.sleep(0.1)
    (only,) = workers
    return only


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_job_killed_before_its_first_lease_renewal_runs_again_within_a_lease(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    """The take marks a job in progress for one lease, not for ARQ's longest timeout (days)."""
    _, token = await make_tenant(sessionmaker)
    # A 3 s lease is first renewed after 1 s: the kill comes before that.
    doomed = await spawn_runner(worker_lease_seconds=3).started()
    # Long enough to be still running once the second worker has started, however slowly.
    job = await submit(client, token, "sleep", {"seconds": 120}, options={"max_tries": 1})
    await poll_job(client, token, job["id"], lambda found: found["status"] == "running")
    await spawn_runner(worker_lease_seconds=3).started()
    doomed.signal(signal.SIGKILL)
    assert await doomed.exit_code(timeout=5) == -signal.SIGKILL
    killed_at = time.monotonic()

    rerun = await poll_job(
        client,
        token,
        job["id"],
        lambda found: found["status"] == "running" and found["attempts"] == 2,
        timeout=15,
    )
    assert rerun["attempts"] == 2
    # One lease and a poll or two; ARQ's own in-progress timeout here would be 7 days.
    assert time.monotonic() - killed_at < 6


async def test_a_running_job_is_cancelled_promptly(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    await spawn_runner().started()
    job = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
    await poll_job(client, token, job["id"], lambda found: found["status"] == "running")
    cancelled_at = time.monotonic()
    response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
    assert response.status_code == 202
    done = await wait_for_status(client, token, job["id"], "cancelled", "succeeded", timeout=5)
    assert done["status"] == "cancelled"
    assert done["error"]["type"] == "cancelled"
    assert time.monotonic() - cancelled_at < 3


async def test_a_failed_attempt_is_retried_after_its_backoff(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    await spawn_runner().started()
    job = await submit(client, token, "flaky", {"fail_times": 1})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=20)
    assert done["status"] == "succeeded"
    assert (done["attempts"], done["result"]) == (2, {"attempts": 2})


async def test_a_tenants_concurrency_quota_holds(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    tenant_id, token = await make_tenant(sessionmaker)
    await set_tenant_limits(sessionmaker, tenant_id, max_concurrent_jobs=1)
    items = [{"args": {"seconds": 0.3}} for _ in range(4)]
    response = await client.post("/jobs/sleep/batch", json={"jobs": items}, headers=auth(token))
    assert response.status_code == 202, response.text
    await spawn_runner(worker_quota_defer_seconds=0.1).started()
    done = [
        await wait_for_status(client, token, job["id"], "succeeded", timeout=20)
        for job in response.json()["jobs"]
    ]
    assert max_overlap(done) == 1
    assert {job["attempts"] for job in done} == {1}  # waiting for the slot is no attempt


async def test_serves_every_queue_announces_itself_and_serves_metrics(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq_redis: ArqRedis,
    settings: Settings,
    runner: str,
    spawn_runner: SpawnWorker,
) -> None:
    """Started with no queue named (the default deployment), one process serves them all,
    `maintenance` included; `jobgate inspect` and the gateway's gauges see it."""
    port = _free_port()
    worker = await spawn_runner(queue=None, worker_metrics_port=port).started()
    presence = await _announced(arq_redis)
    assert sorted(presence.queues) == load_contracts(settings.contract_modules).queues()

    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "seen"})
    await wait_for_status(client, token, job["id"], "succeeded")
    async with httpx.AsyncClient() as http:
        metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert metrics.status_code == 200
    assert 'jobgate_jobs_succeeded_total{job_type="echo",queue="default"} 1.0' in metrics.text
    gateway_metrics = await client.get("/metrics")
    assert "jobgate_workers_alive 1.0" in gateway_metrics.text

    worker.signal(signal.SIGTERM)
    assert await worker.exit_code(timeout=15) == 0
    assert await alive_workers(arq_redis) == []  # withdrawn as it stopped
    _assert_no_line_twice(worker, runner)


def _assert_no_line_twice(worker: WorkerProcess, runner: str) -> None:
    """Every line is written once, through jobgate's handler, but for ARQ's own first two."""
    lines = [line for line in worker.log().splitlines() if line.strip()]
    ours = [line for line in lines if line[:4].isdigit() and "Z [" in line]
    events = Counter(line.split("] ", 1)[1].split()[0] for line in ours)
    assert (events["worker.started"], events["worker.stopped"]) == (1, 1), lines
    # ARQ's command line prints its start and the Redis server's figures through its own
    # handler before jobgate's worker takes over its logging; nothing else, and only once.
    foreign = [line for line in lines if line not in ours]
    expected = [] if runner == "jobgate worker" else ["Starting worker for", "redis_version="]
    assert len(foreign) == len(expected), foreign
    for line, start in zip(foreign, expected, strict=True):
        assert line.split(": ", 1)[1].startswith(start), foreign
    assert not any("delayed=" in line for line in lines)


@pytest.mark.timeout(240)
async def test_built_in_maintenance_runs_once_per_cron_tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    """Two default deployments side by side: `purge_expired` (every minute, on `maintenance`)
    runs once a tick. Waits for the next minute's tick."""
    workers = [
        spawn_runner(queue=None, worker_run_schedules="true", worker_metrics_port=0)
        for _ in range(2)
    ]
    for worker in workers:
        await worker.started()
    started = datetime.now(UTC)
    deadline = time.monotonic() + 75
    while True:
        async with sessionmaker() as session:
            runs = list(
                await session.scalars(
                    select(Job).where(
                        Job.name == "purge_expired",
                        Job.created_at >= started,
                        Job.status == "succeeded",
                    )
                )
            )
        if runs:
            break
        assert time.monotonic() < deadline, "purge_expired never ran"
        await asyncio.sleep(0.5)
    await asyncio.sleep(1)  # a second run of the same tick would have been inserted by now
    async with sessionmaker() as session:
        ticks = Counter(
            key
            for key in await session.scalars(
                select(Job.idempotency_key).where(
                    Job.name == "purge_expired", Job.created_at >= started
                )
            )
        )
    assert ticks and set(ticks.values()) == {1}, ticks
    assert all(str(key).startswith("cron:purge_expired:") for key in ticks)
