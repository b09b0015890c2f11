"""A paused queue stays paused across a worker restart and a Redis flush, under both runners."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.keys import PAUSED_QUEUES, job_key
from tests.chaos.conftest import SpawnWorker
from tests.conftest import ADMIN_TOKEN
from tests.factories import auth, make_tenant, submit, wait_for_status

# Two worker processes start in turn; a start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(150)

OPERATOR = auth(ADMIN_TOKEN)
HOLD_SECONDS = 1.0
"""How long the test watches a paused queue start nothing: twenty polls of these workers."""


async def _all_queued(client: httpx.AsyncClient, token: str, ids: list[str]) -> bool:
    for job_id in ids:
        response = await client.get(f"/jobs/{job_id}", headers=auth(token))
        if response.json()["status"] != "queued":
            return False
    return True


async def test_a_pause_holds_across_a_worker_restart_and_a_redis_flush(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    spawn_runner: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    paused = await client.post("/admin/queues/default/pause", headers=OPERATOR)
    assert paused.status_code == 200, paused.text
    ids = [
        (await submit(client, token, "echo", {"message": priority}, {"priority": priority}))["id"]
        for priority in ("low", "critical", "default", "critical", "low")
    ]
    reconciling = {"reconcile_interval_seconds": 0.2, "reconcile_grace_seconds": 0}
    first = await spawn_runner(**reconciling).started()
    await asyncio.sleep(HOLD_SECONDS)
    assert await _all_queued(client, token, ids)

    first.signal(signal.SIGKILL)
    await first.exit_code(timeout=10)
    await redis.flushdb()  # the pause's mirror and the queued jobs are gone from Redis
    # One job at a time: their start order is the queue's order.
    await spawn_runner(worker_max_jobs=1, **reconciling).started()
    ids_back = [job_key(job_id) for job_id in ids]
    deadline = asyncio.get_running_loop().time() + 10
    while await redis.exists(*ids_back) < len(ids):  # the reconciler put them back...
        assert asyncio.get_running_loop().time() < deadline, "jobs were not re-enqueued"
        await asyncio.sleep(0.02)
    assert await redis.hexists(PAUSED_QUEUES, "default")  # type: ignore[misc]  # ...and the pause
    await asyncio.sleep(HOLD_SECONDS)
    assert await _all_queued(client, token, ids)

    resumed = await client.post("/admin/queues/default/resume", headers=OPERATOR)
    assert resumed.status_code == 200, resumed.text
    done = [await wait_for_status(client, token, job_id, "succeeded") for job_id in ids]
    order = [job["result"]["message"] for job in sorted(done, key=lambda job: job["started_at"])]
    assert order == ["critical", "critical", "default", "low", "low"]
