"""Submitting jobs: validate options, store the rows in one transaction, then hand them to ARQ.

Order matters. Rows are committed before Redis is touched, so a worker never picks up a job
whose row it cannot see. If the hand-off fails, the rows are deleted again and the caller gets
`QueueUnavailable`: a submit either returns jobs that will run or stores nothing. (A crash
between commit and hand-off leaves waiting rows that the reconciler re-enqueues.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self, cast

from arq.connections import ArqRedis
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Contract, JobType, Priority
from shared.enqueue import Delivery, enqueue
from shared.errors import QueueUnavailable
from shared.ids import new_id
from shared.models import Job
from shared.status import JobStatus
from shared.store import delete_jobs, insert_jobs

MAX_DELAY_SECONDS = 366 * 24 * 3600
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.\-/]+$")]
LabelValue = Annotated[str, StringConstraints(max_length=256)]


class SubmitOptions(BaseModel):
    """How to run one job; every field defaults to the job type's declaration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = Field(None, description="`critical`, `default` or `low`.")
    delay_seconds: float | None = Field(
        None, ge=0, le=MAX_DELAY_SECONDS, description="Run no sooner than this many seconds."
    )
    run_at: AwareDatetime | None = Field(
        None, description="Run no sooner than this time (RFC 3339 with offset)."
    )
    max_tries: int | None = Field(None, ge=1, le=100, description="Attempts before `failed`.")
    timeout_seconds: float | None = Field(
        None, gt=0, le=7 * 24 * 3600, description="Stop an attempt that runs longer than this."
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=20, description="Free-form tags, filterable in lists."
    )

    @model_validator(mode="after")
    def _one_start_time(self) -> Self:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        return self

    def start_time(self, now: datetime) -> datetime | None:
        """When the job may start, if later than `now`."""
        if self.delay_seconds:
            return now + timedelta(seconds=self.delay_seconds)
        if self.run_at is not None and self.run_at > now:
            return self.run_at.astimezone(UTC)
        return None


def build_job(
    job_type: JobType[Any, Any],
    *,
    tenant_id: uuid.UUID,
    args: Contract,
    options: SubmitOptions,
    now: datetime,
) -> Job:
    """The row for a new job, its gaps filled from the job type's defaults."""
    start = options.start_time(now)
    return Job(
        id=new_id(),
        tenant_id=tenant_id,
        name=job_type.name,
        queue=job_type.queue,
        priority=options.priority or job_type.priority,
        status=(JobStatus.SCHEDULED if start else JobStatus.QUEUED).value,
        args=args.model_dump(mode="json"),
        attempts=0,
        max_tries=options.max_tries or job_type.max_tries,
        timeout_seconds=options.timeout_seconds or job_type.timeout_seconds,
        labels=dict(options.labels),
        created_at=now,
        scheduled_at=start,
    )


def delivery_of(job: Job) -> Delivery:
    """What ARQ must be told about a stored job."""
    return Delivery(
        job_id=job.id,
        tenant_id=job.tenant_id,
        name=job.name,
        queue=job.queue,
        priority=cast(Priority, job.priority),
        run_at=job.scheduled_at,
    )


async def submit_jobs(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    job_type: JobType[Any, Any],
    requests: Sequence[tuple[Contract, SubmitOptions]],
) -> list[Job]:
    """Store and enqueue jobs of one type, all or nothing."""
    now = datetime.now(UTC)
    jobs = [
        build_job(job_type, tenant_id=tenant_id, args=args, options=options, now=now)
        for args, options in requests
    ]
    await insert_jobs(session, tenant_id=tenant_id, jobs=jobs)
    await session.commit()
    try:
        await enqueue(redis, [delivery_of(job) for job in jobs])
    except QueueUnavailable:
        await delete_jobs(session, tenant_id=tenant_id, job_ids=[job.id for job in jobs])
        await session.commit()
        raise
    return jobs
