"""Test factories: tenants, keys and jobs made the way callers make them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.retention import Retention
from shared.jobs.rows import JobKey
from shared.jobs.status_changes import claim_jobs
from shared.models import Job
from shared.tenants import tenancy
from shared.tenants.apikeys import Scope


async def make_tenant(
    sessionmaker: async_sessionmaker[AsyncSession], name: str = "acme"
) -> tuple[str, str]:
    """A tenant and its first key: (tenant id, token)."""
    async with sessionmaker() as session:
        tenant, first_key = await tenancy.create_tenant(session, name=name)
    return str(tenant.id), first_key.token


async def make_api_key(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, *scopes: Scope
) -> str:
    """Another key for a tenant, with only `scopes`."""
    async with sessionmaker() as session:
        found = await tenancy.find_tenant(session, tenant=tenant_id)
        new_key = await tenancy.create_api_key(session, tenant_id=found.id, scopes=scopes)
    return new_key.token


async def set_tenant_limits(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, **limits: Any
) -> None:
    """Give a tenant its own limits (`TenantLimits` fields; the others: the defaults)."""
    async with sessionmaker() as session:
        found = await tenancy.find_tenant(session, tenant=tenant_id)
        await tenancy.set_limits(session, tenant_id=found.id, limits=tenancy.TenantLimits(**limits))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(
    client: httpx.AsyncClient,
    token: str,
    name: str,
    args: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Submit a job and insist it was accepted."""
    body: dict[str, Any] = {"args": args}
    if options is not None:
        body["options"] = options
    response = await client.post(f"/jobs/{name}", json=body, headers=auth(token))
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_for_status(
    client: httpx.AsyncClient, token: str, job_id: str, *statuses: str, timeout: float = 10
) -> dict[str, Any]:
    """Poll (with long-poll) until the job reaches one of `statuses`, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        wait = max(min(remaining, 2.0), 0)
        response = await client.get(f"/jobs/{job_id}", params={"wait": wait}, headers=auth(token))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        if remaining <= 0:
            raise AssertionError(f"job {job_id} is {job['status']}, not {statuses}: {job}")


async def expire_job(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, job_id: str
) -> None:
    """Let a waiting job's start deadline pass, then have a worker's claim find it: it ends
    `expired`, as a job picked up too late does."""
    async with sessionmaker() as session:
        await session.execute(
            update(Job)
            .where(Job.id == uuid.UUID(job_id))
            .values(start_by=func.now() - timedelta(seconds=1))
        )
        await session.commit()
    key = JobKey(uuid.UUID(tenant_id), uuid.UUID(job_id))
    (claimed,) = await claim_jobs(sessionmaker.kw["bind"], [key], retention=Retention(3600, {}))
    assert claimed.status == "expired", claimed


async def read_attempts(client: httpx.AsyncClient, token: str, job_id: str) -> list[dict[str, Any]]:
    """The job's attempts, as `GET /jobs/{id}/attempts` lists them (insisting on a 200)."""
    response = await client.get(f"/jobs/{job_id}/attempts", headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["job_id"] == job_id
    attempts: list[dict[str, Any]] = body["attempts"]
    return attempts


def max_overlap(jobs: Sequence[dict[str, Any]]) -> int:
    """The most of these jobs that were running at one instant (from started/finished_at)."""
    edges = sorted(
        [(datetime.fromisoformat(job["started_at"]), 1) for job in jobs]
        + [(datetime.fromisoformat(job["finished_at"]), -1) for job in jobs]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
