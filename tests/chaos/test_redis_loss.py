"""PostgreSQL is the source of truth: jobs accepted before Redis lost everything still run."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from tests.chaos.conftest import SpawnWorker
from tests.factories import auth, make_tenant, wait_for_status


async def test_jobs_survive_a_redis_flush_and_run_exactly_once(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    spawn_runner: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    items = [
        {"args": {"message": str(i)}, "options": {"delay_seconds": 1} if i % 4 == 0 else {}}
        for i in range(200)
    ]
    response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
    assert response.status_code == 202
    ids = [job["id"] for job in response.json()["jobs"]]

    await redis.flushdb()  # every queue entry, payload and scheduled entry is gone

    await spawn_runner(reconcile_interval_seconds=0.3, reconcile_grace_seconds=0).started()
    done = await asyncio.gather(
        *(wait_for_status(client, token, job_id, "succeeded", timeout=20) for job_id in ids)
    )
    assert [job["result"]["message"] for job in done] == [str(i) for i in range(200)]
    assert {job["attempts"] for job in done} == {1}
    async with sessionmaker() as session:
        unfinished = await session.execute(
            select(func.count()).where(
                Job.id.in_([uuid.UUID(job_id) for job_id in ids]), Job.status != "succeeded"
            )
        )
    assert unfinished.scalar_one() == 0
