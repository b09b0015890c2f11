"""`jobgate inspect`'s view, read from real PostgreSQL and Redis across tenants."""

from __future__ import annotations

import httpx
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.inspect_command import render
from cli.inspection import inspect_system
from shared.contracts import ECHO
from tests.choice_jobs import UPSTREAM_CALL
from tests.conftest import WorkerFactory
from tests.factories import auth, expire_job, make_tenant, submit, wait_for_status
from tests.polling import poll_job


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
