"""Every statement that changes an existing job: its status, its progress, its re-run link.

Single-job changes are cached SQLAlchemy Core statements run in the caller's session
(`status_sql.transition_statement`): one `UPDATE ... WHERE status IN (allowed) RETURNING`,
so an illegal transition changes nothing instead of corrupting the row, and a move to a
terminal status records the job's webhook delivery in the same statement.

The worker's two hot changes, `claim_jobs` and `record_successes`, take a whole batch of jobs
in one raw asyncpg statement each (`raw_sql`): a worker starts and finishes jobs by the hundred
per second, and the successes that end while one write is under way are recorded together by
the next (see `worker.group_commit`). They are the same transitions in batch form: the same
statuses allowed from (`ALLOWED_FROM`), the same columns set, and a webhook delivery owed by
each job that succeeds. Each job is matched on its tenant and its id together: a statement
cannot reach a job of a tenant it was not given.

The outcomes of a worker's attempt (`record_successes`, `record_retry`, `record_failure`,
`record_cancelled`) take the attempt (`RanAttempt`) and record it in their own statement
(`attempt_sql`). An attempt handed back (`record_handed_back`, jobgate's own outage) or lost
with its worker (`fail_lost_job` ends a job after such attempts) has no outcome to record:
it records none (`shared.jobs.attempts` lists the lost ones).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    bindparam,
    case,
    func,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shared.ids import new_id
from shared.jobs.attempt_sql import AttemptRecord, RanAttempt
from shared.jobs.raw_sql import fetch, row_parameters
from shared.jobs.retention import Retention
from shared.jobs.rows import ClaimedJob, JobKey
from shared.jobs.status_sql import (
    CLAIM_SQL,
    SUCCESS_SQL,
    bound,
    sql_constant,
    transition_statement,
)
from shared.models import Job
from shared.status import UNSUCCESSFUL, WAITING, JobStatus
from shared.webhooks import deliveries

_PURGED_TTL_SECONDS = 3600


async def _transition(
    session: AsyncSession,
    stmt: Select[Job],
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    **params: Any,
) -> Job | None:
    """Run a `transition_statement`; the moved job, or None when not allowed (or no such job)."""
    params = {f"p_{name}": value for name, value in params.items()}
    params.update(p_tenant_id=tenant_id, p_job_id=job_id, delivery_id=new_id())
    return (await session.execute(stmt, params)).scalar_one_or_none()


@functools.cache
def _fail_lost_statement() -> Select[Job]:
    return transition_statement(
        JobStatus.FAILED,
        from_=frozenset({JobStatus.RUNNING}),
        when=Job.attempts >= Job.max_tries + bindparam("p_lost_attempts_allowed", type_=Integer),
        error=bound("error"),
        finished_at=func.now(),
        expires_at=bound("expires_at"),
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

    (See `claim_jobs`, which refuses such a job.)
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
    return transition_statement(
        JobStatus.RETRYING,
        records_attempt=True,
        error=bound("error"),
        scheduled_at=bound("retry_at"),
    )


async def record_retry(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    error: dict[str, Any],
    retry_at: datetime,
    attempt: RanAttempt,
) -> Job | None:
    """The running job failed `attempt` and will run again at `retry_at`."""
    return await _transition(
        session,
        _retry_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=error,
        retry_at=retry_at,
        **attempt.parameters(),
    )


@functools.cache
def _hand_back_statement() -> Select[Job]:
    return transition_statement(
        JobStatus.RETRYING,
        attempts=func.greatest(Job.attempts - 1, 0),
        scheduled_at=bound("run_at"),
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
    return transition_statement(
        JobStatus.FAILED,
        records_attempt=True,
        error=bound("error"),
        finished_at=func.now(),
        expires_at=bound("expires_at"),
    )


async def record_failure(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    error: dict[str, Any],
    expires_at: datetime,
    attempt: RanAttempt,
) -> Job | None:
    """The job failed for good with `attempt` (it is now in the dead-letter view)."""
    return await _transition(
        session,
        _failure_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=error,
        expires_at=expires_at,
        **attempt.parameters(),
    )


@functools.cache
def _expire_running_statement() -> Select[Job]:
    return transition_statement(
        JobStatus.EXPIRED,
        from_=frozenset({JobStatus.RUNNING}),
        records_attempt=AttemptRecord(JobStatus.FAILED, own_error=True),
        error=bound("error"),
        finished_at=func.now(),
        expires_at=bound("expires_at"),
    )


async def expire_instead_of_retry(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    error: dict[str, Any],
    expires_at: datetime,
    attempt: RanAttempt,
    attempt_error: dict[str, Any],
) -> Job | None:
    """The running job failed `attempt` (with `attempt_error`) and its retry would start after
    its start deadline: it ends `expired` with `error` (see `shared.jobs.deadlines`), and the
    attempt is recorded `failed` with its own error."""
    return await _transition(
        session,
        _expire_running_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=error,
        expires_at=expires_at,
        attempt_error_type=attempt_error["type"],
        attempt_error_message=attempt_error["message"],
        **attempt.parameters(),
    )


@functools.cache
def _cancel_waiting_statement(with_reason: bool) -> Select[Job]:
    # Without a reason the error of a retrying job's last attempt stays, as it was.
    reason: dict[str, Any] = {"error": bound("error")} if with_reason else {}
    return transition_statement(
        JobStatus.CANCELLED,
        from_=WAITING,
        finished_at=func.now(),
        expires_at=bound("expires_at"),
        **reason,
    )


async def cancel_waiting(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    expires_at: datetime,
    reason: str | None = None,
) -> Job | None:
    """Cancel a job that has not started; None if it is not waiting.

    `reason`: why jobgate cancels it (a concurrency strategy), as its `cancelled` error.
    """
    if reason is None:
        return await _transition(
            session,
            _cancel_waiting_statement(False),
            tenant_id=tenant_id,
            job_id=job_id,
            expires_at=expires_at,
        )
    return await _transition(
        session,
        _cancel_waiting_statement(True),
        tenant_id=tenant_id,
        job_id=job_id,
        expires_at=expires_at,
        error=cancelled_error(reason),
    )


async def request_cancel(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, reason: str | None = None
) -> Job | None:
    """Mark a running job as asked to stop; None if it is not running.

    `reason`: why jobgate asks (the first one asked is kept), for `record_cancelled`.
    """
    result = await session.execute(
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(
            cancel_requested_at=func.coalesce(Job.cancel_requested_at, func.now()),
            cancel_reason=func.coalesce(Job.cancel_reason, reason),
        )
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return result.scalar_one_or_none()


def cancelled_error(message: str) -> dict[str, str]:
    """The error a cancelled job shows: why it was cancelled."""
    return {"type": "cancelled", "message": message}


@functools.cache
def _cancelled_statement() -> Select[Job]:
    return transition_statement(
        JobStatus.CANCELLED,
        from_=frozenset({JobStatus.RUNNING}),
        records_attempt=True,
        # The reason it was asked to stop for (`request_cancel`), else the bound error.
        error=case(
            (
                Job.cancel_reason.is_not(None),
                func.jsonb_build_object(
                    sql_constant("type"),
                    sql_constant("cancelled"),
                    sql_constant("message"),
                    Job.cancel_reason,
                ),
            ),
            else_=bindparam("p_error", type_=JSONB),
        ),
        finished_at=func.now(),
        expires_at=bound("expires_at"),
    )


async def record_cancelled(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    expires_at: datetime,
    attempt: RanAttempt,
) -> Job | None:
    """A running job stopped `attempt` because it was asked to."""
    return await _transition(
        session,
        _cancelled_statement(),
        tenant_id=tenant_id,
        job_id=job_id,
        error=cancelled_error("cancelled while running"),
        expires_at=expires_at,
        **attempt.parameters(),
    )


async def link_retry(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, retried_by: uuid.UUID
) -> bool:
    """Point a job that ended without a result at its re-run; False if not allowed or already
    linked."""
    result = await session.execute(
        update(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.id == job_id,
            Job.status.in_([status.value for status in UNSUCCESSFUL]),
            Job.retried_by.is_(None),
        )
        .values(retried_by=retried_by)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def link_step_retry(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID, retried_by: uuid.UUID
) -> None:
    """Point a workflow step's unsuccessful job at its re-run (the workflow is locked)."""
    await session.execute(
        update(Job)
        .where(Job.tenant_id == tenant_id, Job.id == job_id)
        .values(retried_by=retried_by)
        .execution_options(synchronize_session=False)
    )


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


@dataclass(frozen=True)
class Success:
    """A running job's successful attempt, to record."""

    key: JobKey
    result: dict[str, Any]
    expires_at: datetime
    attempt: RanAttempt


async def claim_jobs(
    engine: AsyncEngine,
    keys: Sequence[JobKey],
    *,
    retention: Retention,
    lost_attempts_allowed: int | None = None,
) -> list[ClaimedJob]:
    """Mark these waiting (or re-delivered running) jobs running and count an attempt each.

    Returns the jobs claimed; a job that is not waiting (finished, cancelled, unknown) is left
    out. A `running` job is re-delivered when its worker died mid-attempt; with
    `lost_attempts_allowed` that is accepted only while its attempts stay below
    `max_tries + lost_attempts_allowed`, so a job that kills every worker cannot loop forever
    (`fail_lost_job` ends it). A job past its start deadline is returned `expired` instead
    (kept for `retention`), its attempts unchanged: it never starts.
    """
    if not keys:
        return []
    # In id order: two statements locking overlapping rows lock them in the same order.
    ordered = sorted(keys, key=lambda key: key.job_id)
    one_row = len(ordered) == 1
    columns: list[list[Any]] = [[key.tenant_id for key in ordered], [key.job_id for key in ordered]]
    rows = await fetch(
        engine,
        CLAIM_SQL[one_row],
        *row_parameters(columns, one_row=one_row),
        lost_attempts_allowed,
        retention.by_type_json,
        retention.default_seconds,
    )
    return [ClaimedJob(*row) for row in rows]


async def record_successes(engine: AsyncEngine, successes: Sequence[Success]) -> set[JobKey]:
    """Record these running jobs as succeeded; returns those moved (a job no longer running,
    e.g. cancelled meanwhile, keeps its status)."""
    if not successes:
        return set()
    ordered = sorted(successes, key=lambda success: success.key.job_id)
    columns: list[list[Any]] = [
        [success.key.tenant_id for success in ordered],
        [success.key.job_id for success in ordered],
        [json.dumps(success.result) for success in ordered],
        [success.expires_at for success in ordered],
        [new_id() for _ in ordered],
        [success.attempt.number for success in ordered],
        [success.attempt.started_at for success in ordered],
        [success.attempt.worker for success in ordered],
    ]
    one_row = len(ordered) == 1
    rows = await fetch(engine, SUCCESS_SQL[one_row], *row_parameters(columns, one_row=one_row))
    return {JobKey(row["tenant_id"], row["id"]) for row in rows}
