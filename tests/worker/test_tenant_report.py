"""`tenant_report`: counts by type and status, computed in PostgreSQL, for the job's tenant only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.store import JobCount
from shared.models import Job
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import error_locations
from worker.tenant_data import TenantData


async def _run(client: httpx.AsyncClient, token: str, name: str, args: dict[str, Any]) -> str:
    job = await submit(client, token, name, args)
    await wait_for_status(client, token, job["id"], "succeeded", "failed")
    return str(job["id"])


async def _report(client: httpx.AsyncClient, token: str, **args: int) -> dict[str, Any]:
    job = await submit(client, token, "tenant_report", args)
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded", done
    result: dict[str, Any] = done["result"]
    return result


async def _age(sessionmaker: async_sessionmaker[AsyncSession], job_id: str, days: int) -> None:
    """Pretend the job was created `days` days ago."""
    async with sessionmaker() as session:
        await session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job_id))
            .values(created_at=func.now() - timedelta(days=days))
        )
        await session.commit()


@pytest.fixture
async def tenants(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: Worker,
    start_worker: WorkerFactory,
) -> tuple[str, str]:
    """Two tenants with different jobs behind them (tokens of acme, globex)."""
    await start_worker(queue="data_processing")
    _, acme = await make_tenant(sessionmaker, "acme")
    _, globex = await make_tenant(sessionmaker, "globex")
    await _run(client, acme, "echo", {"message": "a"})
    await _run(client, acme, "echo", {"message": "b"})
    await _run(client, acme, "flaky", {"fail_times": 1, "permanent": True})
    old = await _run(client, acme, "echo", {"message": "last month"})
    await _age(sessionmaker, old, days=10)
    await _run(client, globex, "echo", {"message": "c"})
    await submit(client, globex, "echo", {"message": "later"}, {"delay_seconds": 3600})
    return acme, globex


async def test_each_tenant_counts_only_its_own_jobs(
    client: httpx.AsyncClient, tenants: tuple[str, str]
) -> None:
    acme, globex = tenants
    before = datetime.now(UTC)
    report = await _report(client, acme)
    assert report["days"] == 7
    since = datetime.fromisoformat(report["since"])
    assert before - timedelta(days=7, seconds=1) <= since <= datetime.now(UTC) - timedelta(days=7)
    # The report counts itself: it is running while it counts.
    assert report["counts"] == [
        {"name": "echo", "status": "succeeded", "count": 2},
        {"name": "flaky", "status": "failed", "count": 1},
        {"name": "tenant_report", "status": "running", "count": 1},
    ]
    assert report["total"] == 4

    assert (await _report(client, globex))["counts"] == [
        {"name": "echo", "status": "scheduled", "count": 1},
        {"name": "echo", "status": "succeeded", "count": 1},
        {"name": "tenant_report", "status": "running", "count": 1},
    ]


async def test_days_widens_the_window(client: httpx.AsyncClient, tenants: tuple[str, str]) -> None:
    acme, _ = tenants
    assert (await _report(client, acme, days=7))["total"] == 4
    report = await _report(client, acme, days=30)
    assert report["days"] == 30
    assert report["counts"] == [
        {"name": "echo", "status": "succeeded", "count": 3},
        {"name": "flaky", "status": "failed", "count": 1},
        {"name": "tenant_report", "status": "running", "count": 1},
        {"name": "tenant_report", "status": "succeeded", "count": 1},
    ]
    assert report["total"] == 6


async def test_tenant_data_is_bound_to_one_tenant(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    acme_id, acme = await make_tenant(sessionmaker, "acme")
    globex_id, globex = await make_tenant(sessionmaker, "globex")
    await submit(client, acme, "echo", {"message": "a"})
    await submit(client, globex, "sleep", {"seconds": 1})
    since = datetime.now(UTC) - timedelta(days=1)
    acme_data = TenantData(sessionmaker, tenant_id=uuid.UUID(acme_id))
    globex_data = TenantData(sessionmaker, tenant_id=uuid.UUID(globex_id))
    assert await acme_data.job_counts(since) == [JobCount("echo", "queued", 1)]
    assert await globex_data.job_counts(since) == [JobCount("sleep", "queued", 1)]


@pytest.mark.parametrize("days", [0, 366, -1, "a week"])
async def test_days_out_of_bounds_is_422(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], days: object
) -> None:
    _, token = await make_tenant(sessionmaker)
    response = await client.post(
        "/jobs/tenant_report", json={"args": {"days": days}}, headers=auth(token)
    )
    assert error_locations(response) == [["body", "args", "days"]]
