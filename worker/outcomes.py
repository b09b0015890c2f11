"""What an attempt's outcome becomes: a status change, a next try, a lifecycle hook.

A retry is not ARQ's `Retry`: that would put the job back on its queue with a score that
ignores its priority. The outcome records `retrying`, the loop ends the job in Redis, and then
`after_attempt` hands the job to the scheduled set (see `shared.jobs.enqueue`) for its next try.
What is recorded after an attempt waits for PostgreSQL to answer rather than being lost
(`worker.platform_failures`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.exceptions import RedisError

from shared.jobs import deadlines, status_changes, store
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.enqueue import Delivery, enqueue
from shared.jobs.retention import expires_at
from shared.jobs.rows import ClaimedJob, JobKey, delivery_of
from shared.jobs.status_changes import Success
from worker import key_limits
from worker.attempt import HandedBack, JobFailure
from worker.binding import Binding
from worker.context import JobContext, JobOutcome, JobRunContext
from worker.deadlines import expire_instead_of_retry
from worker.metrics import record_outcome
from worker.platform_failures import until_written
from worker.quota import give_back_slot

log = structlog.get_logger("jobgate.worker")


HOOK_TIMEOUT_SECONDS = 30.0
HAND_BACK_DELAY_SECONDS = 1.0
"""How soon an attempt handed back runs again. Short: while PostgreSQL is down no worker takes
it anyway (`worker.health`); the delay only keeps a Redis outage from becoming a busy loop."""


async def run_hook(binding: Binding, context: JobContext, outcome: JobOutcome) -> None:
    """Call the job type's hook for this outcome; a failing hook is logged, nothing more."""
    hook = {
        "succeeded": binding.hooks.on_success,
        "retrying": binding.hooks.on_retry,
        "failed": binding.hooks.on_failure,
        "expired": binding.hooks.on_failure,  # its retry came too late: a failure all the same
    }[outcome.status]
    if hook is None:
        return
    try:
        async with asyncio.timeout(HOOK_TIMEOUT_SECONDS):
            await hook(context, outcome)
    except Exception as exc:  # a hook must never change the recorded outcome
        log.warning("job.hook_failed", hook=outcome.status, error=type(exc).__name__)


def expires_at_for(ctx: JobRunContext, binding: Binding) -> datetime:
    return expires_at(binding.job_type, ctx["settings"])


def ran(ctx: JobRunContext, job: ClaimedJob) -> RanAttempt:
    """This worker's attempt of the job, as its outcome records it in the attempt history."""
    return RanAttempt.of(job, ctx["worker_name"])


async def record_success(
    ctx: JobRunContext, binding: Binding, job: ClaimedJob, result: dict[str, Any]
) -> None:
    # With the other jobs ending meanwhile: one statement for all (see worker.group_commit).
    success = Success(
        JobKey(job.tenant_id, job.id), result, expires_at_for(ctx, binding), ran(ctx, job)
    )
    await until_written(lambda: ctx["successes"].submit(success), outcome="succeeded")
    record_outcome(job, "succeeded")
    log.info("job.succeeded", job_type=job.name, attempt=job.attempts)


async def record_failure(
    ctx: JobRunContext, binding: Binding, job: ClaimedJob, failure: JobFailure
) -> JobOutcome:
    """Record a retry if one is allowed (its delivery left in `ctx["reschedule"]`), else fail
    the job for good; a retry that would start after the job's start deadline expires it."""
    will_retry = failure.is_retryable and job.attempts < job.max_tries
    retry_at = datetime.now(UTC) + timedelta(
        seconds=failure.retry_delay_seconds(binding.job_type.backoff, job.attempts)
    )
    if will_retry and deadlines.is_too_late(job.start_by, retry_at):
        return await expire_instead_of_retry(ctx, binding, job, failure, retry_at)
    outcome = "retrying" if will_retry else "failed"

    async def write() -> None:
        # One statement in autocommit: no BEGIN/COMMIT round trips (the commit is a no-op).
        async with ctx["autocommit_sessionmaker"]() as session:
            if will_retry:
                await status_changes.record_retry(
                    session,
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    error=failure.error,
                    retry_at=retry_at,
                    attempt=ran(ctx, job),
                )
            else:
                await status_changes.record_failure(
                    session,
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    error=failure.error,
                    expires_at=expires_at_for(ctx, binding),
                    attempt=ran(ctx, job),
                )
            await session.commit()

    await until_written(write, outcome=outcome)
    record_outcome(job, outcome, failure.error["type"])
    log.warning(
        f"job.{outcome}", job_type=job.name, attempt=job.attempts, error_type=failure.error["type"]
    )
    if not will_retry:
        return JobOutcome("failed", error=failure.error)
    ctx["reschedule"] = replace(delivery_of(job), run_at=retry_at)
    return JobOutcome("retrying", error=failure.error, retry_at=retry_at)


async def hand_back(
    ctx: JobRunContext, job: ClaimedJob, handed_back: HandedBack
) -> Delivery | None:
    """Put the job back to run again shortly, its attempt not counted; its delivery, or None if
    it no longer runs (cancelled meanwhile)."""
    run_at = datetime.now(UTC) + timedelta(seconds=HAND_BACK_DELAY_SECONDS)

    async def write() -> bool:
        async with ctx["autocommit_sessionmaker"]() as session:
            moved = await status_changes.record_handed_back(
                session, tenant_id=job.tenant_id, job_id=job.id, run_at=run_at
            )
            await session.commit()
        return moved is not None

    moved = await until_written(write, outcome="handed_back")
    log.warning("job.handed_back", job_type=job.name, cause=handed_back.cause, moved=moved)
    return replace(delivery_of(job), run_at=run_at) if moved else None


async def record_if_aborted(ctx: JobRunContext, binding: Binding, job: ClaimedJob) -> None:
    """Record `cancelled` if the job was asked to stop; after a shutdown it runs again."""
    async with ctx["sessionmaker"]() as session:
        if await store.is_cancel_requested(session, tenant_id=job.tenant_id, job_id=job.id):
            await status_changes.record_cancelled(
                session,
                tenant_id=job.tenant_id,
                job_id=job.id,
                expires_at=expires_at_for(ctx, binding),
                attempt=ran(ctx, job),
            )
            await session.commit()
            record_outcome(job, "cancelled")
            log.info("job.cancelled", job_type=job.name, attempt=job.attempts)


async def after_attempt(ctx: JobRunContext) -> None:
    """Once the job has ended in Redis: free its quota slot and its key's (or park it to wait
    for one), and enqueue its next try, if any."""
    tenant_id = ctx.pop("quota_slot", None)
    if tenant_id is not None:
        try:
            await give_back_slot(ctx["redis"], tenant_id=tenant_id, job_id=ctx["job_id"])
        except (RedisError, OSError) as exc:  # the next taker drops it: its lease is gone
            log.warning("quota.release_failed", error=type(exc).__name__)
    await key_limits.after_attempt(ctx)
    retry = ctx.pop("reschedule", None)
    if retry is not None:
        await enqueue(ctx["redis"], [retry])
        ctx["promoter"].expect(retry.run_at)
