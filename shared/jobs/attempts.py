"""A job's attempt history as callers see it (`GET /jobs/{id}/attempts`, the dashboard, `jobgate
inspect JOB_ID`, `JobHandle.attempts()`).

Each finished attempt has its row (`JobAttempt`, recorded with its outcome: `attempt_sql`).
Two kinds of attempt have none, and are told from the job's own `attempts` counter, which
every start adds one to:

- the attempt running now (`running`): its number is the counter, its start the job's
  `started_at`;
- an attempt whose worker stopped before recording an outcome (`lost`): killed, crashed, or
  cut off at shutdown. It used up a try, so it is listed; what it was doing is not known.
  Only the last one's start is (the job's `started_at`, if no other start followed).

An attempt cut short by jobgate's own PostgreSQL or Redis is not listed: it was handed back
and not counted (`worker.platform_failures`), so it has no number either.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import JobNotFound
from shared.jobs.view import JobError
from shared.models import Job, JobAttempt
from shared.status import JobStatus

AttemptOutcome = Literal["running", "succeeded", "retrying", "failed", "cancelled", "lost"]


class AttemptOut(BaseModel):
    """One attempt of a job."""

    number: int = Field(description="1 for the first attempt; the job's `attempts` counts them.")
    outcome: AttemptOutcome = Field(
        description="What the attempt moved the job to (`succeeded`, `retrying`, `failed`, "
        "`cancelled`); `running` while it runs; `lost` when its worker stopped before "
        "recording an outcome (killed, crashed, cut off at shutdown)."
    )
    worker: str | None = Field(
        description="The worker process that ran it (`host:pid`); null if running or lost."
    )
    started_at: datetime | None = Field(
        description="When it was claimed; null for a lost attempt the job started again after "
        "(the job keeps only its latest start)."
    )
    finished_at: datetime | None = Field(
        description="When its outcome was recorded; null if running or lost."
    )
    duration_seconds: float | None = Field(description="`finished_at - started_at`.")
    error: JobError | None = Field(
        description="Why it failed, as the job's `error` said then; null if it did not fail."
    )


class JobAttempts(BaseModel):
    """A job's attempts, oldest first."""

    job_id: uuid.UUID
    attempts: list[AttemptOut]


def _recorded(row: JobAttempt) -> AttemptOut:
    error = None
    if row.error_type is not None:
        error = JobError(type=row.error_type, message=row.error_message or "")
    return AttemptOut(
        number=row.number,
        outcome=row.outcome,
        worker=row.worker,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_seconds=(row.finished_at - row.started_at).total_seconds(),
        error=error,
    )


def _unrecorded(
    number: int, *, is_last: bool, status: str, started_at: datetime | None
) -> AttemptOut:
    is_running = is_last and status == JobStatus.RUNNING
    return AttemptOut(
        number=number,
        outcome="running" if is_running else "lost",
        worker=None,
        started_at=started_at if is_last else None,
        finished_at=None,
        duration_seconds=None,
        error=None,
    )


def attempt_history(
    *, status: str, attempts: int, started_at: datetime | None, recorded: Sequence[JobAttempt]
) -> list[AttemptOut]:
    """Every attempt of a job (its `status`, `attempts` and `started_at`), oldest first: the
    `recorded` ones, and the ones the counter says started but left no row."""
    by_number = {row.number: row for row in recorded}
    numbers = sorted(set(range(1, attempts + 1)) | by_number.keys())
    return [
        _recorded(by_number[number])
        if number in by_number
        else _unrecorded(number, is_last=number == attempts, status=status, started_at=started_at)
        for number in numbers
    ]


async def read_attempts(
    session: AsyncSession, *, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> JobAttempts:
    """The tenant's job's attempts; another tenant's job is `JobNotFound`, like a missing one.

    One query, from the job row matched on tenant and id to its attempts: an attempt is only
    reached through its job, so no tenant's attempts can show up under another's job.
    """
    rows = (
        await session.execute(
            select(Job.status, Job.attempts, Job.started_at, JobAttempt)
            .select_from(Job)
            .outerjoin(JobAttempt, JobAttempt.job_id == Job.id)
            .where(Job.tenant_id == tenant_id, Job.id == job_id)
            .order_by(JobAttempt.number)
            .execution_options(populate_existing=True)
        )
    ).all()
    if not rows:
        raise JobNotFound()
    status, attempts, started_at, _ = rows[0]
    recorded = [row[3] for row in rows if row[3] is not None]
    history = attempt_history(
        status=status, attempts=attempts, started_at=started_at, recorded=recorded
    )
    return JobAttempts(job_id=job_id, attempts=history)
