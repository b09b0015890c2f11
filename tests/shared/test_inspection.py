"""`jobgate inspect`'s view, read from real PostgreSQL and Redis across tenants."""

from __future__ import annotations

import asyncio
import time

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.inspect_command import render
from cli.inspection import inspect_system
from shared.jobs.key_waits import waiting_counts
from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.keyed_jobs import KEYED_TYPES
from tests.polling import poll_job
from worker.testing import declared


async def test_failures_and_running_jobs_of_every_tenant(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq_redis: ArqRedis,
    start_worker: WorkerFactory,
) -> None:
    _, acme = await make_tenant(sessionmaker, "acme")
    _, globex = await make_tenant(sessionmaker, "globex")
    await start_worker()
    failed = await submit(client, acme, "flaky", {"fail_times": 1, "permanent": True})
    slow = await submit(client, globex, "sleep", {"seconds": 30, "steps": 30})
    await wait_for_status(client, acme, failed["id"], "failed")
    await poll_job(client, globex, slow["id"], lambda job: job["status"] == "running")

    async with sessionmaker() as session:
        view = await inspect_system(session, arq_redis, queues=["default"], failures_limit=5)

    (failure,) = view.recent_failures
    assert (str(failure.id), failure.tenant, failure.error_type) == (
        failed["id"],
        "acme",
        "permanent",
    )
    (running,) = view.running
    assert (str(running.id), running.tenant, running.attempt) == (slow["id"], "globex", 1)
    assert running.worker is None  # an in-process test worker does not announce itself
    assert view.workers == []
    # The running job is on its queue (ARQ keeps it there) but is not waiting.
    assert {line.priority: line.depth for line in view.queues} == {
        "critical": 0,
        "default": 0,
        "low": 0,
    }
    table = render(view)
    assert "recent failures: 1" in table
    assert "permanent:" in table
    assert "globex" in table
    cancel = await client.post(f"/jobs/{slow['id']}/cancel", headers=auth(globex))
    assert cancel.status_code == 202
    await wait_for_status(client, globex, slow["id"], "cancelled")  # not left to the teardown


async def test_a_running_jobs_key_and_the_jobs_waiting_for_keys(
    make_client: ClientFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    arq_redis: ArqRedis,
    start_worker: WorkerFactory,
) -> None:
    _, acme = await make_tenant(sessionmaker, "acme")
    with declared(*KEYED_TYPES):
        client = await make_client()
        await start_worker()
        args = {"customer": {"id": "cust-42"}, "seconds": 30}
        running = await submit(client, acme, "keyed_queue", args)
        await poll_job(client, acme, running["id"], lambda job: job["status"] == "running")
        waiting = await submit(client, acme, "keyed_queue", args)
        deadline = time.monotonic() + 5
        while not (await waiting_counts(arq_redis)).get("keyed_queue"):
            assert time.monotonic() < deadline, "the second job never waited for its key"
            await asyncio.sleep(0.02)

        async with sessionmaker() as session:
            view = await inspect_system(session, arq_redis, queues=["default"])
        table = render(view)
        for job in (running, waiting):
            cancel = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(acme))
            assert cancel.status_code in (200, 202), cancel.text
        await wait_for_status(client, acme, running["id"], "cancelled")

    (shown,) = view.running
    assert shown.concurrency_key == "cust-42"
    assert view.concurrency_waiting == {"keyed_queue": 1}
    assert "cust-42" in table
    assert "waiting for a concurrency key: keyed_queue 1" in table
