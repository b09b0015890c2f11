"""Every job query. Each function takes the session first and the tenant as a required keyword.

Reads start from `_owned(tenant_id)` and writes from `_transition(...)`, so no query can leave
out the tenant; a status change is one `UPDATE ... WHERE status IN (allowed) RETURNING`, so an
illegal transition changes nothing instead of corrupting the row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import webhooks
from shared.errors import JobNotFound
from shared.models import Job
from shared.status import ALLOWED_FROM, CLAIMABLE, WAITING, JobStatus

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


def _owned(tenant_id: uuid.UUID) -> Select[Job]:
    """The base of every read: jobs of this tenant only."""
    return select(Job).where(Job.tenant_id == tenant_id)


async def insert_jobs(session: AsyncSession, *, tenant_id: uuid.UUID, jobs: Sequence[Job]) -> None:
    """Add new jobs of this tenant to the session (the caller commits)."""
    for job in jobs:
        if job.tenant_id != tenant_id:
            raise ValueError("job belongs to another tenant")
    session.add_all(jobs)
    await session.flush()


async def insert_job_once(session: AsyncSession, *, tenant_id: uuid.UUID, job: Job) -> Job | None:
    """Insert a job carrying an idempotency key; None if the tenant already used that key."""
    if job.tenant_id != tenant_id or job.idempotency_key is None:
        raise ValueError("insert_job_once needs the tenant's job with an idempotency key")
    values = {
        column.key: getattr(job, column.key)
        for column in Job.__table__.columns
        if getattr(job, column.key) is not None
    }
    stmt = (
        pg_insert(Job)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[Job.tenant_id, Job.idempotency_key],
            index_where=Job.idempotency_key.is_not(None),
        )
        .returning(Job)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_by_idempotency_key(
    session: AsyncSession, *, tenant_id: uuid.UUID, key: str
) -> Job | None:
    """The tenant's job submitted with this idempotency key."""
    result = await session.execute(_owned(tenant_id).where(Job.idempotency_key == key))
    return result.scalar_one_or_none()


async def delete_jobs(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> None:
    """Remove jobs that never reached a queue (their submit failed)."""
    await session.execute(
        delete(Job).where(Job.tenant_id == tenant_id, Job.id.in_(job_ids)),
        execution_options={"synchronize_session": False},
    )


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
    stmt = _owned(tenant_id)
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
    result = await session.execute(stmt.order_by(Job.id.desc()).limit(query.limit + 1))
    return list(result.scalars())


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


async def _transition(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    to: JobStatus,
    from_: frozenset[JobStatus] | None = None,
    when: ColumnElement[bool] | None = None,
    **values: Any,
) -> Job | None:
    """Move a job to `to` if its status (and `when`) allows it; None when not (or no such job).

    A move to a terminal status also records the job's webhook delivery, in this transaction.
    """
    allowed = ALLOWED_FROM[to] if from_ is None else from_
    stmt = (
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status.in_([status.value for status in allowed]),
            *(() if when is None else (when,)),
        )
        .values(status=to.value, **values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    job = (await session.execute(stmt)).scalar_one_or_none()
    if job is not None and to.is_terminal:
        await webhooks.record_deliveries(session, tenant_id=tenant_id, jobs=[job])
    return job


async def claim_job(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    lost_attempts_allowed: int | None = None,
) -> Job | None:
    """Mark a waiting (or re-delivered running) job as running and count the attempt.

    A `running` job is re-delivered when its worker died mid-attempt. With
    `lost_attempts_allowed`, that is accepted only while its attempts stay below
    `max_tries + lost_attempts_allowed`, so a job that kills every worker cannot loop forever
    (`fail_lost_job` ends it).
    """
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.RUNNING,
        from_=CLAIMABLE,
        when=(
            None
            if lost_attempts_allowed is None
            else or_(
                Job.status != JobStatus.RUNNING.value,
                Job.attempts < Job.max_tries + lost_attempts_allowed,
            )
        ),
        attempts=Job.attempts + 1,
        started_at=func.now(),
        progress=None,
    )


async def fail_lost_job(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    lost_attempts_allowed: int,
    expires_at: datetime,
) -> Job | None:
    """Fail a re-delivered `running` job whose workers died once too often (see `claim_job`)."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.FAILED,
        from_=frozenset({JobStatus.RUNNING}),
        when=Job.attempts >= Job.max_tries + lost_attempts_allowed,
        error={
            "type": "worker_lost",
            "message": "its worker stopped mid-attempt (killed, crashed or cut off at shutdown)"
            " more often than allowed",
        },
        finished_at=func.now(),
        expires_at=expires_at,
    )


async def record_progress(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, progress: dict[str, Any]
) -> bool:
    """Store a running job's progress; False if the job is no longer running."""
    result = await session.execute(
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(progress=progress)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_success(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    result: dict[str, Any],
    expires_at: datetime,
) -> Job | None:
    """The running job succeeded with `result`."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.SUCCEEDED,
        result=result,
        error=None,
        finished_at=func.now(),
        expires_at=expires_at,
    )


async def record_retry(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    error: dict[str, Any],
    retry_at: datetime,
) -> Job | None:
    """The running job failed an attempt and will run again at `retry_at`."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.RETRYING,
        error=error,
        scheduled_at=retry_at,
    )


async def record_failure(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    error: dict[str, Any],
    expires_at: datetime,
) -> Job | None:
    """The job failed for good (it is now in the dead-letter view)."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.FAILED,
        error=error,
        finished_at=func.now(),
        expires_at=expires_at,
    )


async def cancel_waiting(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, expires_at: datetime
) -> Job | None:
    """Cancel a job that has not started; None if it is not waiting."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.CANCELLED,
        from_=WAITING,
        finished_at=func.now(),
        expires_at=expires_at,
    )


async def request_cancel(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> Job | None:
    """Mark a running job as asked to stop; None if it is not running."""
    result = await session.execute(
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(cancel_requested_at=func.coalesce(Job.cancel_requested_at, func.now()))
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return result.scalar_one_or_none()


async def record_cancelled(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, expires_at: datetime
) -> Job | None:
    """A running job stopped because it was asked to."""
    return await _transition(
        session,
        tenant_id=tenant_id,
        job_id=job_id,
        to=JobStatus.CANCELLED,
        from_=frozenset({JobStatus.RUNNING}),
        error={"type": "cancelled", "message": "cancelled while running"},
        finished_at=func.now(),
        expires_at=expires_at,
    )


async def is_cancel_requested(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> bool:
    """Whether someone asked this job to stop."""
    result = await session.execute(
        select(Job.cancel_requested_at).where(Job.tenant_id == tenant_id, Job.id == job_id)
    )
    return result.scalar_one_or_none() is not None


async def link_retry(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, retried_by: uuid.UUID
) -> bool:
    """Point a failed or cancelled job at its re-run; False if not allowed or already linked."""
    result = await session.execute(
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status.in_([JobStatus.FAILED.value, JobStatus.CANCELLED.value]),
            Job.retried_by.is_(None),
        )
        .values(retried_by=retried_by)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def purge_waiting(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    queue: str | None = None,
    name: str | None = None,
) -> list[Job]:
    """Cancel all of a tenant's jobs that have not started (optionally one queue or type)."""
    stmt = update(Job).where(
        Job.tenant_id == tenant_id,
        Job.status.in_([status.value for status in WAITING]),
    )
    if queue is not None:
        stmt = stmt.where(Job.queue == queue)
    if name is not None:
        stmt = stmt.where(Job.name == name)
    result = await session.execute(
        stmt.values(
            status=JobStatus.CANCELLED.value,
            finished_at=func.now(),
            expires_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, _PURGED_TTL_SECONDS),
            error={"type": "purged", "message": "removed by a bulk purge"},
        )
        .returning(Job)
        .execution_options(synchronize_session=False)
    )
    jobs = list(result.scalars())
    await webhooks.record_deliveries(session, tenant_id=tenant_id, jobs=jobs)
    return jobs
