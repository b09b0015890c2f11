"""The worker's side of start deadlines (`shared.jobs.deadlines`): what follows an expiry.

Each way a job expires is counted (`jobgate_jobs_expired_total`), logged (`job.expired`) and,
for a workflow's step, moves its workflow on at once (an expired step fails it, as a failed
one does):

- at the claim: `after_claim_expiry`, called by the runner instead of running the job;
- instead of a retry: `expire_instead_of_retry`, called by `worker.outcomes.record_failure`;
- by the sweep: `DeadlineSweep`, a step of the reconciler's pass, which also takes the jobs
  it expired off their Redis queues.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.jobs import deadlines, status_changes
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.enqueue import withdraw
from shared.jobs.retention import Retention, expires_at
from shared.jobs.rows import ClaimedJob, delivery_of
from shared.settings import Settings
from worker.attempt import JobFailure
from worker.binding import Binding
from worker.context import JobOutcome, JobRunContext, WorkerContext
from worker.metrics import record_outcome
from worker.platform_failures import until_written
from worker.workflow_advance import advance, advance_after_step

log = structlog.get_logger("jobgate.worker")

SWEEP_BATCH_SIZE = 500
"""Jobs one statement of the sweep expires: its locks and its transaction stay short."""


async def after_claim_expiry(ctx: WorkerContext, job: ClaimedJob) -> None:
    """The claim found the job past its deadline and ended it `expired`: it never ran."""
    _record(job, "claim")
    await advance_after_step(ctx, job)


async def expire_instead_of_retry(
    ctx: JobRunContext, binding: Binding, job: ClaimedJob, failure: JobFailure, retry_at: datetime
) -> JobOutcome:
    """The attempt failed and its retry would start after the deadline: end the job `expired`
    (its error says so and keeps the attempt's own) instead of scheduling the retry."""
    error = deadlines.retry_too_late_error(retry_at, failure.error)

    async def write() -> None:
        async with ctx["autocommit_sessionmaker"]() as session:
            await status_changes.expire_instead_of_retry(
                session,
                tenant_id=job.tenant_id,
                job_id=job.id,
                error=error,
                expires_at=expires_at(binding.job_type, ctx["settings"]),
                attempt=RanAttempt.of(job, ctx["worker_name"]),
                attempt_error=failure.error,
            )
            await session.commit()

    await until_written(write, outcome="expired")
    _record(job, "retry")
    return JobOutcome("expired", error=error)


@dataclass(frozen=True)
class DeadlineSweep:
    """Expire waiting jobs past their deadline that no worker picks up, a batch at a time."""

    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    retention: Retention
    settings: Settings
    batch_size: int = SWEEP_BATCH_SIZE

    async def run(self) -> int:
        """Expire every overdue waiting job; how many. Database and Redis errors propagate
        (the reconciler logs them; the next pass carries on where this one stopped)."""
        total = 0
        while True:
            expired = await deadlines.expire_overdue(
                self.engine, retention=self.retention, batch_size=self.batch_size
            )
            total += len(expired)
            await self._after(expired)
            if len(expired) < self.batch_size:
                return total

    async def _after(self, expired: Sequence[ClaimedJob]) -> None:
        for job in expired:
            _record(job, "sweep")
        # Their queue entries would be skipped by workers anyway (the rows are final); taken
        # off now, a paused queue's depth stops counting them.
        with contextlib.suppress(RedisError, OSError):
            await withdraw(self.redis, [delivery_of(job) for job in expired])
        for job in expired:
            if job.workflow_id is not None:
                await advance(
                    self.sessionmaker,
                    self.redis,
                    tenant_id=job.tenant_id,
                    workflow_id=job.workflow_id,
                    settings=self.settings,
                )


def _record(job: ClaimedJob, by: str) -> None:
    record_outcome(job, "expired")
    log.info(
        "job.expired",
        job_id=str(job.id),
        tenant_id=str(job.tenant_id),
        job_type=job.name,
        attempt=job.attempts,
        by=by,
    )
