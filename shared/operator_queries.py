"""The few queries that cross tenants, for operators only (command line, maintenance jobs).

Tenant-facing code never imports this module; it uses `shared.store`, where every query is
scoped to one tenant.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job
from shared.status import WAITING


async def tenant_of_job(session: AsyncSession, job_id: uuid.UUID) -> uuid.UUID | None:
    """Which tenant a job belongs to (operator commands address jobs by id alone)."""
    result = await session.execute(select(Job.tenant_id).where(Job.id == job_id))
    return result.scalar_one_or_none()


async def tenants_with_waiting_jobs(session: AsyncSession, *, queue: str) -> list[uuid.UUID]:
    """Tenants that have jobs waiting on `queue`."""
    result = await session.execute(
        select(Job.tenant_id)
        .where(Job.queue == queue, Job.status.in_([status.value for status in WAITING]))
        .distinct()
    )
    return list(result.scalars())
