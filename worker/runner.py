"""Running one job, step by step: admit and claim → attempt → record the outcome → move its
workflow on → run its hook.

Each step has its module: `worker.admission` (quota and claim), `worker.attempt` (validate,
call under the time limit, validate), `worker.outcomes` (status changes, next tries, hooks).
Job code raises `RetryableJobError` / `PermanentJobError` (any other exception counts as
retryable); only these modules turn outcomes into status changes and retries.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog

from shared.jobs.rows import ClaimedJob
from shared.status import JobStatus
from worker.admission import Claimed, admit, claim, fail_if_lost_too_often
from worker.attempt import HandedBack, JobFailure, attempt, job_context_of
from worker.binding import Binding
from worker.context import JobContext, JobOutcome, JobRunContext
from worker.deadlines import after_claim_expiry
from worker.job_observation import JobObservation
from worker.metrics import JOB_DURATION, record_start
from worker.outcomes import hand_back, record_failure, record_if_aborted, record_success, run_hook
from worker.workflow_advance import advance_after_step

log = structlog.get_logger("jobgate.worker")


async def run_job(ctx: JobRunContext, *, tenant_id: str, claimed: Claimed | None = None) -> None:
    """Run one job `worker.loop` took (its payload carries only the tenant), step by step.

    Without `claimed`, it takes the tenant's quota slot and claims the job itself.
    """
    job_id, tenant = uuid.UUID(ctx["job_id"]), uuid.UUID(tenant_id)
    with JobObservation(job_id=str(job_id), tenant_id=tenant_id) as observed:
        if claimed is None:
            if not await admit(ctx, tenant):
                return
            claimed = Claimed(await claim(ctx, tenant, job_id))
        job = claimed.job
        if job is None:
            if not await fail_if_lost_too_often(ctx, tenant, job_id):
                log.info("job.skipped", reason="not waiting (finished, cancelled or unknown)")
            return
        if job.status == JobStatus.EXPIRED:  # past its start deadline: the claim ended it
            await after_claim_expiry(ctx, job)
            return
        observed.claimed(job)
        binding = ctx["bindings"][job.name]
        record_start(job)
        context = job_context_of(ctx, job)
        outcome = await _run_and_record(ctx, binding, job, context)
        if outcome is None:
            return  # handed back: no outcome, so no hook and no workflow step
        observed.finished(outcome)
        if outcome.status != "retrying":  # a step's final outcome moves its workflow on
            await advance_after_step(ctx, job)
        await run_hook(binding, context, outcome)


async def _run_and_record(
    ctx: JobRunContext,
    binding: Binding,
    job: ClaimedJob,
    context: JobContext,
) -> JobOutcome | None:
    """The attempt, then its outcome recorded; None if it was handed back (`HandedBack`)."""
    started = time.monotonic()
    # The lease is held until the outcome is recorded too: while PostgreSQL is down that
    # waits (`until_written`), and another worker must not take the job meanwhile.
    with ctx["leases"].hold(ctx["job_id"]):
        try:
            result = await attempt(binding, job, context)
        except asyncio.CancelledError:
            # Either an abort (someone cancelled the job) or a shutdown; only the row knows.
            await asyncio.shield(record_if_aborted(ctx, binding, job))
            raise
        except HandedBack as handed_back:
            ctx["reschedule"] = await hand_back(ctx, job, handed_back)
            return None
        except JobFailure as failure:
            return await record_failure(ctx, binding, job, failure)
        else:
            await record_success(ctx, binding, job, result)
            return JobOutcome("succeeded", result=result)
        finally:
            JOB_DURATION.labels(job.name).observe(time.monotonic() - started)
