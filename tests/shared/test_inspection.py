"""`jobgate inspect`'s view, read from real PostgreSQL and Redis across tenants."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.inspect_command import render
from cli.inspection import inspect_system
from shared.contracts import ECHO
from shared.jobs.key_waits import waiting_counts
from shared.rate_limiter import schedule_key, take_start
from tests.choice_jobs import UPSTREAM_CALL
from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import auth, expire_job, make_tenant, submit, wait_for_status
from tests.keyed_jobs import KEYED_TYPES
from tests.polling import poll_job
from tests.rate_limited_jobs import RATE_LIMITED_TYPES, STAMP_RATE_LIMITED
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
        view = await inspect_system(session, arq_redis, job_types=[ECHO], failures_limit=5)

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


async def test_job_types_are_listed_with_the_queues_they_may_run_on(
    sessionmaker: async_sessionmaker[AsyncSession], arq_redis: ArqRedis
) -> None:
    async with sessionmaker() as session:
        view = await inspect_system(session, arq_redis, job_types=[ECHO, UPSTREAM_CALL])

    assert [(line.name, line.queues) for line in view.job_types] == [
        ("echo", ["default"]),
        ("upstream_call", ["default", "bulk"]),
    ]
    assert {line.queue for line in view.queues} == {"default", "bulk"}  # each one's depths
    table = render(view)
    assert "job types (each one's queue first" in table
    assert "  upstream_call  default, bulk" in table


async def test_recent_expirations_are_listed_apart_from_failures(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], arq_redis: ArqRedis
) -> None:
    acme_id, acme = await make_tenant(sessionmaker, "acme")
    late = await submit(client, acme, "echo", {"message": "late"}, {"start_within_seconds": 60})
    await expire_job(sessionmaker, acme_id, late["id"])

    async with sessionmaker() as session:
        view = await inspect_system(session, arq_redis, job_types=[ECHO], failures_limit=5)

    assert view.recent_failures == []
    (expired,) = view.recent_expirations
    assert (str(expired.id), expired.tenant, expired.queue) == (late["id"], "acme", "default")
    assert expired.start_by is not None
    assert "recent expirations (not started by their deadline): 1" in render(view)


async def test_rate_limited_types_and_how_far_ahead_their_starts_are_booked(
    sessionmaker: async_sessionmaker[AsyncSession], arq_redis: ArqRedis
) -> None:
    limit = STAMP_RATE_LIMITED.rate_limit
    assert limit is not None
    schedule = schedule_key(STAMP_RATE_LIMITED.name, limit, tenant_id=uuid.uuid4(), args=None)
    assert schedule is not None
    began = asyncio.get_running_loop().time()
    for number in range(8):  # the burst of 3 starts now, 5 are booked up to 500 ms ahead
        await take_start(arq_redis, limit, schedule=schedule, job_id=f"job-{number}")

    async with sessionmaker() as session:
        view = await inspect_system(session, arq_redis, job_types=[ECHO, *RATE_LIMITED_TYPES])

    elapsed = asyncio.get_running_loop().time() - began
    by_name = {line.name: line for line in view.rate_limited_types}
    assert set(by_name) == {"stamp_rate_limited", "stamp_per_customer"}
    booked = by_name["stamp_rate_limited"]
    assert (booked.queue, booked.limit) == ("default", "10 per 1 s, burst 2")
    assert booked.next_free_start_seconds is not None
    # The 9th would start 600 ms after the first, less the time gone by since.
    assert 0.6 - elapsed - 0.01 <= booked.next_free_start_seconds <= 0.6
    assert by_name["stamp_per_customer"].next_free_start_seconds is None
    table = render(view)
    assert "rate-limited job types: 2" in table
    assert "1 per 2 s, per tenant and customer_id" in table
    assert "per key" in table
    assert "rate-limited" not in render(view.model_copy(update={"rate_limited_types": []}))


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
            view = await inspect_system(session, arq_redis, job_types=[ECHO])
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
