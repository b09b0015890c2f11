"""What the web dashboard reads: job rows for one tenant or, in the operator's session, for all.

Every function takes `tenant` as a required keyword: a tenant's id, or `ALL_TENANTS`, which
only the operator's session passes. A query cannot leave the tenant out by accident; reading
across tenants is spelled out at the call. Filters are `shared.jobs.store`'s own (`filter_jobs`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from shared.jobs.store import JobQuery, filter_jobs
from shared.models import Job, Tenant
from shared.status import WAITING, JobStatus


class AllTenants(enum.Enum):
    """Marks a query that reads every tenant's jobs (operator sessions only)."""

    ALL = "all"


ALL_TENANTS = AllTenants.ALL
TenantScope = uuid.UUID | Literal[AllTenants.ALL]


def _tenant_condition(tenant: TenantScope) -> tuple[ColumnElement[bool], ...]:
    return () if tenant is ALL_TENANTS else (Job.tenant_id == tenant,)


def _jobs(tenant: TenantScope) -> Select[Job]:
    return select(Job).where(*_tenant_condition(tenant))


async def list_jobs(session: AsyncSession, *, tenant: TenantScope, query: JobQuery) -> list[Job]:
    """One page of jobs, newest first (one more than `limit`, to tell if there are more)."""
    stmt = filter_jobs(_jobs(tenant), query).order_by(Job.id.desc()).limit(query.limit + 1)
    return list((await session.execute(stmt)).scalars())


async def find_job(session: AsyncSession, *, tenant: TenantScope, job_id: uuid.UUID) -> Job | None:
    """The job with this id if `tenant` may see it."""
    stmt = _jobs(tenant).where(Job.id == job_id).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


@dataclass(frozen=True)
class WaitingCount:
    """Jobs not started yet, on one queue at one priority and status."""

    queue: str
    priority: str
    status: str
    count: int


async def waiting_counts(session: AsyncSession, *, tenant: TenantScope) -> list[WaitingCount]:
    """Jobs waiting to start (queued, scheduled, retrying) by queue, priority and status."""
    stmt = (
        select(Job.queue, Job.priority, Job.status, func.count())
        .where(*_tenant_condition(tenant), Job.status.in_([status.value for status in WAITING]))
        .group_by(Job.queue, Job.priority, Job.status)
        .order_by(Job.queue, Job.priority, Job.status)
    )
    rows = await session.execute(stmt)
    return [WaitingCount(queue, priority, status, count) for queue, priority, status, count in rows]


@dataclass(frozen=True)
class ThroughputBucket:
    """Jobs that finished within one time bucket, by outcome."""

    start: datetime
    succeeded: int
    failed: int
    cancelled: int
    expired: int

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.expired


async def throughput(
    session: AsyncSession,
    *,
    tenant: TenantScope,
    since: datetime,
    bucket: timedelta,
    buckets: int,
) -> list[ThroughputBucket]:
    """Finished jobs per bucket from `since` on, every bucket present (empty ones as zeros)."""
    start = func.date_bin(bucket, Job.finished_at, since).label("start")
    stmt = (
        select(
            start,
            func.count().filter(Job.status == JobStatus.SUCCEEDED.value),
            func.count().filter(Job.status == JobStatus.FAILED.value),
            func.count().filter(Job.status == JobStatus.CANCELLED.value),
            func.count().filter(Job.status == JobStatus.EXPIRED.value),
        )
        .where(*_tenant_condition(tenant), Job.finished_at >= since)
        .group_by(start)
    )
    found = {row[0]: row for row in await session.execute(stmt)}
    result = []
    for index in range(buckets):
        at = since + index * bucket
        row = found.get(at)
        counts = (0, 0, 0, 0) if row is None else (row[1], row[2], row[3], row[4])
        result.append(ThroughputBucket(at, *counts))
    return result


async def running_jobs(session: AsyncSession, *, tenant: TenantScope, limit: int) -> list[Job]:
    """Jobs running now, longest-running first."""
    stmt = (
        _jobs(tenant)
        .where(Job.status == JobStatus.RUNNING.value)
        .order_by(Job.started_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


@dataclass(frozen=True)
class DeadLetterGroup:
    """Failed jobs not re-run yet, of one type that failed with one kind of error."""

    name: str
    error_type: str
    latest_message: str
    count: int
    latest_at: datetime | None


def _dead_letters(tenant: TenantScope) -> tuple[ColumnElement[bool], ...]:
    return (
        *_tenant_condition(tenant),
        Job.status == JobStatus.FAILED.value,
        Job.retried_by.is_(None),
    )


def _error_type() -> ColumnElement[str]:
    return func.coalesce(Job.error["type"].astext, "unknown")


async def dead_letter_groups(
    session: AsyncSession, *, tenant: TenantScope
) -> list[DeadLetterGroup]:
    """Failed, not yet re-run jobs grouped by job type and error type, biggest group first."""
    error_type = _error_type()
    latest_message = func.array_agg(
        aggregate_order_by(Job.error["message"].astext, Job.finished_at.desc())
    )[1]
    stmt = (
        select(Job.name, error_type, latest_message, func.count(), func.max(Job.finished_at))
        .where(*_dead_letters(tenant))
        .group_by(Job.name, error_type)
        .order_by(func.count().desc(), Job.name)
    )
    return [
        DeadLetterGroup(name, kind, message or "", count, latest_at)
        for name, kind, message, count, latest_at in await session.execute(stmt)
    ]


async def dead_letters_of_group(
    session: AsyncSession, *, tenant: TenantScope, name: str, error_type: str, limit: int
) -> Sequence[Job]:
    """The failed, not yet re-run jobs of one group, oldest first."""
    stmt = (
        _jobs(tenant)
        .where(*_dead_letters(tenant), Job.name == name, _error_type() == error_type)
        .order_by(Job.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def tenant_names(session: AsyncSession) -> dict[uuid.UUID, str]:
    """Every tenant's name by id, for the operator's tenant column and filter."""
    rows = await session.execute(select(Tenant.id, Tenant.name).order_by(Tenant.name))
    return {tenant_id: name for tenant_id, name in rows}  # noqa: C416 (rows are Row objects)
