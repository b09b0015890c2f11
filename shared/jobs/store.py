"""Every job query. Each function takes the session first and the tenant as a required keyword.

Reads start from `_owned(tenant_id)` and writes from `_transition(...)`, so no query can leave
out the tenant; a status change is one `UPDATE ... WHERE status IN (allowed) RETURNING`, so an
illegal transition changes nothing instead of corrupting the row.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    Table,
    Update,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from shared.errors import JobNotFound
from shared.ids import new_id
from shared.models import Job
from shared.status import ALLOWED_FROM, WAITING, JobStatus
from shared.webhooks import deliveries

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


_JOB_COLUMNS = tuple(column.key for column in Job.__table__.columns)
_INSERT_JOB = pg_insert(Job)


async def insert_jobs(session: AsyncSession, *, tenant_id: uuid.UUID, jobs: Sequence[Job]) -> None:
    """Insert new jobs of this tenant in the session's transaction (the caller commits).

    One Core `INSERT` (several jobs: one executemany, batched into multi-row statements): the
    rows are complete as built, so the ORM unit of work (identity map, flush bookkeeping) would
    only add cost to the submit path. The `Job` objects stay transient, with every value set.
    """
    for job in jobs:
        if job.tenant_id != tenant_id:
            raise ValueError("job belongs to another tenant")
    rows = [{key: getattr(job, key) for key in _JOB_COLUMNS} for job in jobs]
    connection = await session.connection()
    await connection.execute(_INSERT_JOB, rows)


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


_IDS = ARRAY(UUID)


@functools.cache
def _discard_statement() -> Update:
    """Delete jobs and unlink whatever names them as its re-run, in one statement.

    The `UPDATE` takes its ids from the `DELETE`'s `RETURNING`, so it runs after it: a
    workflow step's old job becomes its step's current job again only once the new job is
    gone (the unique index on (workflow, step) allows one). Named parameters only: SQLAlchemy's
    statement cache could not fill in anonymous ones inside a DML CTE.
    """
    tenant_id: BindParameter[uuid.UUID] = bindparam("p_tenant_id")
    gone = (
        delete(Job)
        .where(Job.tenant_id == tenant_id, Job.id == any_(bindparam("p_job_ids", type_=_IDS)))
        .returning(Job.id)
        .cte("gone")
    )
    return (
        update(Job)
        .where(Job.tenant_id == tenant_id, Job.retried_by.in_(select(gone.c.id)))
        .values(retried_by=null())
        .add_cte(gone)
        .execution_options(synchronize_session=False)
    )


async def discard_jobs(
    connection: AsyncSession | AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    job_ids: Sequence[uuid.UUID],
) -> None:
    """Undo the creation of jobs that never reached a queue (their hand-off to Redis failed).

    Removes the rows and the links other jobs hold to them (`retried_by` of the job they
    re-run), atomically, so a refused hand-off leaves no trace. Every path that creates jobs
    undoes them here.
    """
    await connection.execute(
        _discard_statement(), {"p_tenant_id": tenant_id, "p_job_ids": list(job_ids)}
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


def _transition_statement(
    to: JobStatus,
    *,
    from_: frozenset[JobStatus] | None = None,
    when: ColumnElement[bool] | None = None,
    **values: Any,
) -> Select[Job]:
    """The one statement that moves a job to `to` if its status (and `when`) allows it.

    Built once per kind of change (callers cache it): the job's `tenant_id` and `job_id`, and
    any `bindparam` in `when` or `values`, are bound at execution. A move to a terminal status
    also records the job's webhook delivery in the same statement (`WITH moved AS (UPDATE ...
    RETURNING ...) INSERT INTO webhook_delivery ... FROM moved`), so it stays atomic without a
    transaction of its own (the worker runs these in autocommit).
    """
    allowed = ALLOWED_FROM[to] if from_ is None else from_
    table = cast(Table, Job.__table__)
    moved = (
        update(table)
        .where(
            table.c.tenant_id == bindparam("p_tenant_id"),
            table.c.id == bindparam("p_job_id"),
            table.c.status.in_([_sql_constant(status.value) for status in sorted(allowed)]),
            *(() if when is None else (when,)),
        )
        .values(status=_sql_constant(to.value), **values)
        .returning(*table.c)
        .cte("moved")
    )
    stmt = select(aliased(Job, moved))
    if to.is_terminal:
        stmt = stmt.add_cte(deliveries.deliveries_of_moved(moved))
    return stmt.execution_options(populate_existing=True)


async def _transition(
    session: AsyncSession,
    stmt: Select[Job],
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    **params: Any,
) -> Job | None:
    """Run a `_transition_statement`; the moved job, or None when not allowed (or no such job)."""
    params = {f"p_{name}": value for name, value in params.items()}
    params.update(p_tenant_id=tenant_id, p_job_id=job_id, delivery_id=new_id())
    return (await session.execute(stmt, params)).scalar_one_or_none()


def _bound(name: str) -> BindParameter[Any]:
    # Not a column's name: SQLAlchemy would take a parameter named like a column as a SET value.
    return bindparam(f"p_{name}")


def _sql_constant(value: str) -> ColumnElement[Any]:
    """One of our own status names written into the SQL: a cached statement holds no anonymous
    parameter (SQLAlchemy's cache could not fill those in inside a DML CTE)."""
    return literal_column(f"'{value}'")


@functools.cache
def _fail_lost_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.FAILED,
        from_=frozenset({JobStatus.RUNNING}),
        when=Job.attempts >= Job.max_tries + bindparam("p_lost_attempts_allowed", type_=Integer),
        error=_bound("error"),
        finished_at=func.now(),
        expires_at=_bound("expires_at"),
    )


async def fail_lost_job(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    lost_attempts_allowed: int,
    expires_at: datetime,
) -> Job | None:
    """Fail a re-delivered `running` job whose workers died once too often.

    (See `job_transitions.claim_jobs`, which refuses such a job.)
    """
    return await _transition(
        session,
        _fail_lost_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        lost_attempts_allowed=lost_attempts_allowed,
        error={
            "type": "worker_lost",
            "message": "its worker stopped mid-attempt (killed, crashed or cut off at shutdown)"
            " more often than allowed",
        },
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


@functools.cache
def _retry_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.RETRYING, error=_bound("error"), scheduled_at=_bound("retry_at")
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
        _retry_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=error,
        retry_at=retry_at,
    )


@functools.cache
def _hand_back_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.RETRYING,
        attempts=func.greatest(Job.attempts - 1, 0),
        scheduled_at=_bound("run_at"),
    )


async def record_handed_back(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, run_at: datetime
) -> Job | None:
    """The running job's attempt was cut short by jobgate's own failure (PostgreSQL or Redis
    unavailable), not by the job: it runs again at `run_at` and the attempt is not counted.

    `retrying` is the one waiting status a running job may move to; its `error` stays what it
    was (None on a first try), since nothing went wrong with the job itself.
    """
    return await _transition(
        session, _hand_back_statement(), tenant_id=tenant_id, job_id=job_id, run_at=run_at
    )


@functools.cache
def _failure_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.FAILED,
        error=_bound("error"),
        finished_at=func.now(),
        expires_at=_bound("expires_at"),
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
        _failure_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=error,
        expires_at=expires_at,
    )


@functools.cache
def _cancel_waiting_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.CANCELLED,
        from_=WAITING,
        finished_at=func.now(),
        expires_at=_bound("expires_at"),
    )


async def cancel_waiting(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, expires_at: datetime
) -> Job | None:
    """Cancel a job that has not started; None if it is not waiting."""
    return await _transition(
        session,
        _cancel_waiting_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
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


@functools.cache
def _cancelled_statement() -> Select[Job]:
    return _transition_statement(
        JobStatus.CANCELLED,
        from_=frozenset({JobStatus.RUNNING}),
        error=_bound("error"),
        finished_at=func.now(),
        expires_at=_bound("expires_at"),
    )


async def record_cancelled(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, expires_at: datetime
) -> Job | None:
    """A running job stopped because it was asked to."""
    return await _transition(
        session,
        _cancelled_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error={"type": "cancelled", "message": "cancelled while running"},
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
    await deliveries.record_deliveries(session, tenant_id=tenant_id, jobs=jobs)
    return jobs
