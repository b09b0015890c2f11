"""A worker told to recycle drains and exits 0 after N jobs or above an RSS limit; none is lost."""

from __future__ import annotations

from collections import Counter

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from tests.chaos.conftest import SpawnWorker
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, wait_for_status

JOBS = 8
# Bounded apart: a process's start-up (imports, connections) goes at the machine's pace, which
# is slow on a busy CI runner; once started, recycling itself must be quick.
STARTUP_SECONDS = 30
RECYCLE_SECONDS = 10


async def _submit_echoes(client: httpx.AsyncClient, token: str) -> list[str]:
    items = [{"args": {"message": str(i)}} for i in range(JOBS)]
    response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
    assert response.status_code == 202, response.text
    return [job["id"] for job in response.json()["jobs"]]


async def _statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessionmaker() as session:
        return Counter((await session.execute(select(Job.status))).scalars())


async def test_a_worker_exits_after_its_job_budget_and_leaves_the_rest_queued(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_worker: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    ids = await _submit_echoes(client, token)

    worker = spawn_worker(worker_max_jobs_per_process=5)
    await worker.wait_for_log("worker.started", timeout=STARTUP_SECONDS)
    assert await worker.exit_code(timeout=RECYCLE_SECONDS) == 0
    assert "job budget spent" in worker.log()
    assert await _statuses(sessionmaker) == {"succeeded": 5, "queued": JOBS - 5}

    await start_worker()  # what the supervisor's restart amounts to
    for job_id in ids:
        done = await wait_for_status(client, token, job_id, "succeeded", timeout=10)
        assert done["attempts"] == 1


async def test_a_worker_above_its_memory_limit_drains_and_exits(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_worker: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    ids = await _submit_echoes(client, token)

    worker = spawn_worker(worker_max_rss_mb=1)  # any Python process is above 1 MiB
    await worker.wait_for_log("worker.started", timeout=STARTUP_SECONDS)
    assert await worker.exit_code(timeout=RECYCLE_SECONDS) == 0
    assert "memory limit" in worker.log()

    await start_worker()
    for job_id in ids:
        done = await wait_for_status(client, token, job_id, "succeeded", timeout=10)
        assert done["attempts"] == 1
