"""Every read of jobs. Each function takes the session first and the tenant as a required keyword.

Reads start from `_owned(tenant_id)`, so no query can leave out the tenant. Jobs are created
in `shared.jobs.submit` (statements in `submit_sql`) and changed in `status_changes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    Select,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import JobNotFound
from shared.models import Job
from shared.status import JobStatus

_PURGED_TTL_SECONDS = 3600


@dataclass(frozen=True)
class JobQuery:
    """Filters and page of `GET /jobs`; `before_id` is the decoded cursor."""

    limit: int
    statuses: Sequence[JobStatus] = ()
    names: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    before_id: uuid.UUID | None = None


def utc_filter_time(value: datetime) -> datetime:
    """A `JobQuery` time in UTC (one without an offset is taken as UTC). A time outside years
    1..9999 once in UTC raises `ValueError`: asyncpg could not send it, and Python's own
    conversion raises `OverflowError` (`0001-01-01T00:00:00+01:00`)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time must lie between years 1 and 9999 in UTC") from None


def _owned(tenant_id: uuid.UUID) -> Select[Job]:
    """The base of every read: jobs of this tenant only."""
    return select(Job).where(Job.tenant_id == tenant_id)


async def find_by_idempotency_key(
    session: AsyncSession, *, tenant_id: uuid.UUID, key: str
) -> Job | None:
    """The tenant's job submitted with this idempotency key."""
    result = await session.execute(_owned(tenant_id).where(Job.idempotency_key == key))
    return result.scalar_one_or_none()


async def find_job(session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    """The tenant's job with this id, or None."""
    result = await session.execute(
        _owned(tenant_id).where(Job.id == job_id).execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def get_job(session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    """The tenant's job with this id; another tenant's job is `JobNotFound`, like a missing one."""
    job = await find_job(session, tenant_id=tenant_id, job_id=job_id)
    if job is None:
        raise JobNotFound()
    return job


async def list_jobs(session: AsyncSession, *, tenant_id: uuid.UUID, query: JobQuery) -> list[Job]:
    """One page of the tenant's jobs, newest first (one more than `limit`, to tell if more)."""
    stmt = filter_jobs(_owned(tenant_id), query)
    result = await session.execute(stmt.order_by(Job.id.desc()).limit(query.limit + 1))
    return list(result.scalars())


def filter_jobs(stmt: Select[Job], query: JobQuery) -> Select[Job]:
    """`stmt` narrowed by the query's filters and cursor (the page's order and size are not set)."""
    if query.statuses:
        stmt = stmt.where(Job.status.in_([status.value for status in query.statuses]))
    if query.names:
        stmt = stmt.where(Job.name.in_(query.names))
    if query.labels:
        stmt = stmt.where(Job.labels.contains(query.labels))
    if query.created_after is not None:
        stmt = stmt.where(Job.created_at > query.created_after)
    if query.created_before is not None:
        stmt = stmt.where(Job.created_at < query.created_before)
    if query.before_id is not None:
        stmt = stmt.where(Job.id < query.before_id)
    return stmt


@dataclass(frozen=True)
class JobCount:
    """How many of a tenant's jobs have this type and status."""

    name: str
    status: str
    count: int


async def count_jobs(
    session: AsyncSession, *, tenant_id: uuid.UUID, since: datetime
) -> list[JobCount]:
    """The tenant's jobs created since `since`, counted by type and status (one GROUP BY)."""
    stmt = (
        _owned(tenant_id)
        .where(Job.created_at >= since)
        .with_only_columns(Job.name, Job.status, func.count())
        .group_by(Job.name, Job.status)
        .order_by(Job.name, Job.status)
    )
    result = await session.execute(stmt)
    return [JobCount(name=name, status=status, count=count) for name, status, count in result]


async def is_cancel_requested(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> bool:
    """Whether someone asked this job to stop."""
    result = await session.execute(
        select(Job.cancel_requested_at).where(Job.tenant_id == tenant_id, Job.id == job_id)
    )
    return result.scalar_one_or_none() is not None
