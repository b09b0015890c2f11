"""Before a run: the admission steps (the tenant's concurrency quota, the job type's rate
limit), then the claim of the row.

A job an admission step turns away, such as one that finds no free slot of its tenant's quota
(`worker.quota`), is not claimed (no attempt counted, its row still waiting) and goes back
(`worker.put_back`); one turned away by its concurrency key waits for a slot of the key
(`worker.key_limits`). Jobs that need no admission step are claimed together, one statement a
poll (`claim_together`); the others one by one, after their steps (`admit`, `claim`). A job the
claim refuses is either not waiting any more (skipped) or a re-delivery whose workers keep
dying, which is failed here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog

from shared.jobs import status_changes, store
from shared.jobs.rows import ClaimedJob, JobKey
from shared.jobs.status_changes import claim_jobs
from shared.status import JobStatus
from worker.attempt import job_context_of
from worker.context import JobOutcome, JobRunContext, WorkerContext
from worker.key_limits import admit_by_key, key_slot_of
from worker.metrics import QUOTA_DEFERRALS, record_outcome
from worker.outcomes import expires_at_for, run_hook
from worker.put_back import put_back
from worker.quota import take_slot
from worker.rate_limits import admit_by_rate, rate_limit_of
from worker.take import Taken

log = structlog.get_logger("jobgate.worker")


@dataclass(frozen=True)
class Claimed:
    """The outcome of a claim made before `run_job` (`worker.loop` claims a poll's jobs at
    once): the job, now running (or `expired`: past its start deadline), or None if it was
    not waiting."""

    job: ClaimedJob | None


async def claim_together(ctx: WorkerContext, taken: list[Taken]) -> dict[str, Claimed]:
    """Claim, in one statement, the taken jobs that need no admission step.

    The others (and unreadable ones) are left to `run_job`, which admits them before it claims
    (`admit`, `claim`).
    """
    keys = []
    for job in taken:
        if job.tenant_id is None:
            continue
        tenant_id = uuid.UUID(job.tenant_id)
        if not await needs_admission(ctx, job, tenant_id):
            keys.append(JobKey(tenant_id, uuid.UUID(job.job_id)))
    claimed = await claim_jobs(
        ctx["engine"],
        keys,
        retention=ctx["retention"],
        lost_attempts_allowed=ctx["settings"].worker_lost_attempts_allowed,
    )
    by_id = {str(job.id): job for job in claimed}
    return {str(key.job_id): Claimed(by_id.get(str(key.job_id))) for key in keys}


async def needs_admission(ctx: WorkerContext, job: Taken, tenant_id: uuid.UUID) -> bool:
    """Whether an admission step of `admit` may turn this job away (so it is claimed alone)."""
    if rate_limit_of(ctx, job.name) is not None or key_slot_of(ctx, job) is not None:
        return True
    return await ctx["quotas"].limit_of(tenant_id) is not None


async def admit(ctx: JobRunContext, tenant_id: uuid.UUID) -> bool:
    """Run the admission steps in order; the first that turns the job away ends them.

    The rate limit comes last: a start of the limit is only taken by a job that then starts.
    """
    return (
        await admit_by_quota(ctx, tenant_id)
        and await admit_by_key(ctx, tenant_id)
        and await admit_by_rate(ctx, tenant_id)
    )


async def admit_by_quota(ctx: JobRunContext, tenant_id: uuid.UUID) -> bool:
    """Take a slot of the tenant's concurrency quota; if none is free, put the job back.

    Before the claim, so a job put back keeps its row (`queued`, attempts unchanged); the slot
    is given back by `after_attempt`, or frees itself once the lease lapses (see `worker.quota`).
    """
    limit = await ctx["quotas"].limit_of(tenant_id)
    if limit is None:
        return True
    job_id = ctx["job_id"]
    if await take_slot(ctx["redis"], tenant_id=tenant_id, job_id=job_id, limit=limit):
        ctx["quota_slot"] = tenant_id
        return True
    delay = timedelta(seconds=ctx["settings"].worker_quota_defer_seconds)
    ctx["reschedule"] = await put_back(ctx, tenant_id, delay=delay, score=ctx["score"])
    if ctx["reschedule"] is not None:
        QUOTA_DEFERRALS.inc()
        log.info("job.deferred", reason="tenant concurrency quota")
    return False


async def claim(ctx: JobRunContext, tenant_id: uuid.UUID, job_id: uuid.UUID) -> ClaimedJob | None:
    claimed = await claim_jobs(
        ctx["engine"],
        [JobKey(tenant_id, job_id)],
        retention=ctx["retention"],
        lost_attempts_allowed=ctx["settings"].worker_lost_attempts_allowed,
    )
    return claimed[0] if claimed else None


async def fail_if_lost_too_often(
    ctx: JobRunContext, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> bool:
    """End a re-delivered job whose workers keep dying (`worker_lost`); False if not that case.

    Only re-deliveries of `running` jobs get here: the claim refused them once attempts reached
    `max_tries` plus the allowance. Without this, a job that crashes its worker (OOM, segfault)
    would be re-delivered and crash the next one forever.
    """
    async with ctx["sessionmaker"]() as session:
        found = await store.find_job(session, tenant_id=tenant_id, job_id=job_id)
        if found is None or found.status != JobStatus.RUNNING:
            return False
        binding = ctx["bindings"][found.name]
        failed = await status_changes.fail_lost_job(
            session,
            tenant_id=tenant_id,
            job_id=job_id,
            lost_attempts_allowed=ctx["settings"].worker_lost_attempts_allowed,
            expires_at=expires_at_for(ctx, binding),
        )
        await session.commit()
    if failed is None:
        return False
    job = ClaimedJob.of(failed)
    record_outcome(job, "failed", "worker_lost")
    log.warning("job.failed", job_type=job.name, attempt=job.attempts, error_type="worker_lost")
    await run_hook(binding, job_context_of(ctx, job), JobOutcome("failed", error=job.error))
    return True
