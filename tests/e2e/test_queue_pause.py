"""Pausing a queue against real workers: jobs wait, running ones finish, a resume starts them in
order, and the pause outlives a Redis flush (PostgreSQL is the truth, the reconciler mirrors it)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.queue_pauses import mirrored_pauses
from shared.keys import job_key
from shared.redis import create_redis
from shared.settings import Settings
from tests.conftest import ADMIN_TOKEN, WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.polling import poll_job

OPERATOR = auth(ADMIN_TOKEN)
HOLD_SECONDS = 1.0
"""How long a test watches a paused queue start nothing: fifty polls of the test workers."""


async def _pause(client: httpx.AsyncClient, queue: str = "default") -> None:
    response = await client.post(f"/admin/queues/{queue}/pause", headers=OPERATOR)
    assert response.status_code == 200, response.text


async def _resume(client: httpx.AsyncClient, queue: str = "default") -> None:
    response = await client.post(f"/admin/queues/{queue}/resume", headers=OPERATOR)
    assert response.status_code == 200, response.text


async def _statuses(client: httpx.AsyncClient, token: str, jobs: list[dict[str, Any]]) -> set[str]:
    found = set()
    for job in jobs:
        response = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        found.add(response.json()["status"])
    return found


async def test_a_paused_queue_holds_its_jobs_and_a_resume_starts_them_by_priority(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    await start_worker(max_jobs=1)  # one at a time: their start order is the queue's order
    await _pause(client)
    jobs = [
        await submit(client, token, "echo", {"message": priority}, {"priority": priority})
        for priority in ("low", "default", "critical", "low", "critical", "default")
    ]
    assert {job["status"] for job in jobs} == {"queued"}
    await asyncio.sleep(HOLD_SECONDS)
    assert await _statuses(client, token, jobs) == {"queued"}

    await _resume(client)
    done = [await wait_for_status(client, token, job["id"], "succeeded") for job in jobs]
    started = [job["result"]["message"] for job in sorted(done, key=lambda j: j["started_at"])]
    assert started == ["critical", "critical", "default", "default", "low", "low"]


async def test_running_jobs_finish_during_a_pause(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    await start_worker()
    running = await submit(client, token, "sleep", {"seconds": 0.5})
    await poll_job(client, token, running["id"], lambda job: job["status"] == "running")
    await _pause(client)
    later = await submit(client, token, "echo", {"message": "after the pause"})
    finished = await wait_for_status(client, token, running["id"], "succeeded")
    assert finished["attempts"] == 1
    await asyncio.sleep(HOLD_SECONDS)
    assert await _statuses(client, token, [later]) == {"queued"}


async def test_a_pause_outlives_a_redis_flush(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    await _pause(client)
    jobs = [await submit(client, token, "echo", {"message": str(i)}) for i in range(5)]
    await redis.flushdb()  # the pause's mirror and every queued job are gone from Redis

    reconciling = settings.model_copy(
        update={"reconcile_interval_seconds": 0.2, "reconcile_grace_seconds": 0}
    )
    await start_worker(settings=reconciling)
    # The reconciler put the jobs back and the queue is paused again in Redis...
    arq_redis = create_redis(settings)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not all([await redis.exists(job_key(job["id"])) for job in jobs]):
            assert asyncio.get_running_loop().time() < deadline, "jobs were not re-enqueued"
            await asyncio.sleep(0.02)
        assert await mirrored_pauses(arq_redis) == {"default"}
    finally:
        await arq_redis.aclose(close_connection_pool=True)
    # ...so nothing starts until it is resumed.
    await asyncio.sleep(HOLD_SECONDS)
    assert await _statuses(client, token, jobs) == {"queued"}
    await _resume(client)
    for job in jobs:
        await wait_for_status(client, token, job["id"], "succeeded")
