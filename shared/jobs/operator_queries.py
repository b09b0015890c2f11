"""The few queries that cross tenants, for operators only (command line, maintenance jobs).

Tenant-facing code never imports this module; it uses `shared.jobs.store`, where every query is
scoped to one tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Job, Tenant, WebhookDelivery, Workflow
from shared.status import WAITING, JobStatus


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


async def purge_expired(session: AsyncSession, *, batch_size: int) -> int:
    """Delete up to `batch_size` jobs whose retention has passed; returns how many (commits).

    A job whose webhook is still being tried stays until that delivery settles: its body is
    rendered from the job row. A step of a running workflow stays too: the steps after it are
    planned from its result (`shared.workflows.runs`).
    """
    webhook_pending = exists().where(
        WebhookDelivery.job_id == Job.id, WebhookDelivery.status == "pending"
    )
    workflow_running = exists().where(Workflow.id == Job.workflow_id, Workflow.status == "running")
    expired = (
        select(Job.id)
        .where(Job.expires_at < func.now(), ~webhook_pending, ~workflow_running)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.execute(delete(Job).where(Job.id.in_(expired)))
    await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def failed_jobs(
    session: AsyncSession,
    *,
    name: str | None = None,
    tenant_id: uuid.UUID | None = None,
    only_unretried: bool = False,
    limit: int = 100,
) -> list[Job]:
    """The dead-letter view: jobs that ended `failed`, newest first, across tenants."""
    stmt = select(Job).where(Job.status == JobStatus.FAILED.value)
    if name is not None:
        stmt = stmt.where(Job.name == name)
    if tenant_id is not None:
        stmt = stmt.where(Job.tenant_id == tenant_id)
    if only_unretried:
        stmt = stmt.where(Job.retried_by.is_(None))
    result = await session.execute(stmt.order_by(Job.id.desc()).limit(limit))
    return list(result.scalars())


async def expired_jobs(session: AsyncSession, *, limit: int = 100) -> list[Job]:
    """Jobs that ended `expired` (not started by their deadline), newest first, across tenants.

    Not the dead-letter view: nothing went wrong with their code, they waited too long.
    """
    stmt = select(Job).where(Job.status == JobStatus.EXPIRED.value)
    result = await session.execute(stmt.order_by(Job.id.desc()).limit(limit))
    return list(result.scalars())


async def running_jobs(session: AsyncSession, *, limit: int = 100) -> list[Job]:
    """Jobs running now across tenants, longest-running first (`jobgate inspect`)."""
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.RUNNING.value)
        .order_by(Job.started_at, Job.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def tenant_names(
    session: AsyncSession, tenant_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The names of these tenants, to show operators who owns a job."""
    if not tenant_ids:
        return {}
    result = await session.execute(
        select(Tenant.id, Tenant.name).where(Tenant.id.in_(list(tenant_ids)))
    )
    return dict(result.all())
