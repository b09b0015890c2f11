"""Running one job, step by step: claim → validate args → call → validate result → record.

Job code raises `RetryableJobError` / `PermanentJobError` (any other exception counts as
retryable); only this module turns outcomes into status changes and retries.

A retry is not ARQ's `Retry`: that would put the job back on its queue with a score that
ignores its priority. The runner records `retrying`, ARQ finishes the attempt, and then
`after_job_end` hands the job to the scheduled set (see `shared.jobs.enqueue`) for its next try.

Before the claim comes the tenant's concurrency quota (`worker.quota`): a job that finds no
free slot is not claimed (no attempt counted, its row still waiting) and goes back the same
way, shortly, at its former place in line.

jobgate's own failures are not the job's (`worker.platform_failures`): an attempt cut short by
PostgreSQL or Redis being unavailable is handed back, uncounted, to run again shortly; and what
the runner records after an attempt waits for PostgreSQL to answer rather than being lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shared.contracts import Contract
from shared.db_errors import describe_database_error
from shared.errors import (
    CircuitOpenError,
    DatabaseUnavailable,
    DependencyUnavailable,
    PermanentJobError,
)
from shared.jobs import store
from shared.jobs.enqueue import Delivery, enqueue
from shared.jobs.retention import expires_at
from shared.jobs.submit import delivery_of
from shared.jobs.transitions import ClaimedJob, JobKey, Success, claim_jobs
from shared.status import CLAIMABLE, JobStatus
from worker.binding import Binding
from worker.circuit import Circuits
from worker.context import JobContext, JobOutcome, JobRunContext
from worker.job_observation import JobObservation
from worker.mail import Mailer
from worker.maintenance import Maintenance
from worker.metrics import JOB_DURATION, QUOTA_DEFERRALS, record_outcome, record_start
from worker.platform_failures import until_written
from worker.progress import BestEffortProgress
from worker.quota import give_back_slot, take_slot
from worker.tenant_data import TenantData
from worker.workflow_advance import advance_after_step

log = structlog.get_logger("jobgate.worker")

HOOK_TIMEOUT_SECONDS = 30.0
HAND_BACK_DELAY_SECONDS = 1.0
"""How soon an attempt handed back runs again. Short: while PostgreSQL is down no worker takes
it anyway (`worker.health`); the delay only keeps a Redis outage from becoming a busy loop."""


class HandedBack(Exception):
    """The attempt failed because jobgate's own PostgreSQL or Redis did: not the job's doing."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause  # fixed phrases (`shared.db_errors`), for the log


class JobFailure(Exception):
    """An attempt failed; `error` is what the job row records, `is_retryable` what happens next."""

    def __init__(
        self, error_type: str, message: str, *, is_retryable: bool, retry_after_seconds: float = 0
    ) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.is_retryable = is_retryable
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Claimed:
    """The outcome of a claim made before `run_job` (`worker.loop` claims a poll's jobs at
    once): the job, now running, or None if it was not waiting."""

    job: ClaimedJob | None


async def run_job(ctx: JobRunContext, *, tenant_id: str, claimed: Claimed | None = None) -> None:
    """The coroutine ARQ calls for every jobgate job (the payload carries only the tenant).

    Without `claimed`, it takes the tenant's quota slot and claims the job itself.
    """
    job_id, tenant = uuid.UUID(ctx["job_id"]), uuid.UUID(tenant_id)
    with JobObservation(job_id=str(job_id), tenant_id=tenant_id) as observed:
        if claimed is None:
            if not await _admit(ctx, tenant):
                return
            claimed = Claimed(await _claim(ctx, tenant, job_id))
        job = claimed.job
        if job is None:
            if not await _fail_if_lost_too_often(ctx, tenant, job_id):
                log.info("job.skipped", reason="not waiting (finished, cancelled or unknown)")
            return
        observed.claimed(job)
        binding = ctx["bindings"][job.name]
        record_start(job)
        context = _job_context(ctx, job)
        outcome = await _run_and_record(ctx, binding, job, context)
        if outcome is None:
            return  # handed back: no outcome, so no hook and no workflow step
        observed.finished(outcome)
        if outcome.status != "retrying":  # a step's final outcome moves its workflow on
            await advance_after_step(ctx, job)
        await _run_hook(binding, context, outcome)


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
            result = await _attempt(binding, job, context)
        except asyncio.CancelledError:
            # Either an abort (someone cancelled the job) or a shutdown; only the row knows.
            await asyncio.shield(_record_if_aborted(ctx, binding, job))
            raise
        except HandedBack as handed_back:
            ctx["reschedule"] = await _hand_back(ctx, job, handed_back)
            return None
        except JobFailure as failure:
            retry = await _record_failure(ctx, binding, job, failure)
            if retry is None:
                return JobOutcome("failed", error=failure.error)
            ctx["reschedule"] = retry
            return JobOutcome("retrying", error=failure.error, retry_at=retry.run_at)
        else:
            await _record_success(ctx, binding, job, result)
            return JobOutcome("succeeded", result=result)
        finally:
            JOB_DURATION.labels(job.name).observe(time.monotonic() - started)


async def _claim(ctx: JobRunContext, tenant_id: uuid.UUID, job_id: uuid.UUID) -> ClaimedJob | None:
    claimed = await claim_jobs(
        ctx["engine"],
        [JobKey(tenant_id, job_id)],
        lost_attempts_allowed=ctx["settings"].worker_lost_attempts_allowed,
    )
    return claimed[0] if claimed else None


async def _fail_if_lost_too_often(
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
        failed = await store.fail_lost_job(
            session,
            tenant_id=tenant_id,
            job_id=job_id,
            lost_attempts_allowed=ctx["settings"].worker_lost_attempts_allowed,
            expires_at=_expires_at(ctx, binding),
        )
        await session.commit()
    if failed is None:
        return False
    job = ClaimedJob.of(failed)
    record_outcome(job, "failed", "worker_lost")
    log.warning("job.failed", job_type=job.name, attempt=job.attempts, error_type="worker_lost")
    await _run_hook(binding, _job_context(ctx, job), JobOutcome("failed", error=job.error))
    return True


async def _run_hook(binding: Binding, context: JobContext, outcome: JobOutcome) -> None:
    """Call the job type's hook for this outcome; a failing hook is logged, nothing more."""
    hook = {
        "succeeded": binding.hooks.on_success,
        "retrying": binding.hooks.on_retry,
        "failed": binding.hooks.on_failure,
    }[outcome.status]
    if hook is None:
        return
    try:
        async with asyncio.timeout(HOOK_TIMEOUT_SECONDS):
            await hook(context, outcome)
    except Exception as exc:  # a hook must never change the recorded outcome
        log.warning("job.hook_failed", hook=outcome.status, error=type(exc).__name__)


async def _attempt(binding: Binding, job: ClaimedJob, context: JobContext) -> dict[str, Any]:
    """Validate, call and validate again; every failure comes out as `JobFailure`."""
    args = _validate_args(binding, job)
    limit = asyncio.timeout(job.timeout_seconds)
    try:
        async with limit:
            outcome = await binding.function(context, args)
    except PermanentJobError as exc:
        raise JobFailure("permanent", exc.message, is_retryable=False) from None
    except DependencyUnavailable as exc:
        # Raised by jobgate's own helpers only (its progress, data, breakers): their PostgreSQL
        # or Redis failed, not the job. Job code that catches it and raises something else
        # makes that the job's failure.
        cause = exc.cause if isinstance(exc, DatabaseUnavailable) else None
        raise HandedBack(cause or exc.code) from None
    except CircuitOpenError as exc:
        # No retry before the breaker lets a trial through: it would only be refused again.
        raise JobFailure(
            type(exc).__name__,
            exc.message,
            is_retryable=True,
            retry_after_seconds=exc.retry_after_seconds,
        ) from None
    except Exception as exc:
        if isinstance(exc, TimeoutError) and limit.expired():
            raise JobFailure(
                "timeout", f"attempt exceeded {job.timeout_seconds:g} s", is_retryable=True
            ) from None
        # Job code may raise anything (a TimeoutError of its own too: a call it made timed
        # out); it is recorded by class name and retried.
        raise JobFailure(type(exc).__name__, _message_of(exc), is_retryable=True) from None
    return _validate_result(binding, outcome)


def _message_of(exc: Exception) -> str:
    """What the job's `error` says of an exception job code raised; the one place it is made.

    The tenant sees it. A SQLAlchemy error's text carries the statement, its parameters and
    the driver's message: only a fixed cause is kept ("too many connections (SQLSTATE
    53300)", or the driver error's class name), never that text.
    """
    if isinstance(exc, SQLAlchemyError):
        return describe_database_error(exc)
    return str(exc) or repr(exc)


def _validate_args(binding: Binding, job: ClaimedJob) -> Contract:
    try:
        args: Contract = binding.job_type.args.model_validate(job.args)
    except ValidationError as exc:
        # The contract changed between submit and run (a deploy): retrying cannot help.
        raise JobFailure("invalid_args", _summarise(exc), is_retryable=False) from None
    return args


def _validate_result(binding: Binding, outcome: object) -> dict[str, Any]:
    try:
        result = binding.job_type.result.model_validate(outcome, from_attributes=True)
    except ValidationError as exc:
        raise JobFailure("invalid_result", _summarise(exc), is_retryable=False) from None
    return cast(dict[str, Any], result.model_dump(mode="json"))


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors()
    )


def _job_context(ctx: JobRunContext, job: ClaimedJob) -> JobContext:
    sessionmaker = ctx["sessionmaker"]
    return JobContext(
        job_id=job.id,
        tenant_id=job.tenant_id,
        attempt=job.attempts,
        max_tries=job.max_tries,
        worker_name=ctx["worker_name"],
        report=BestEffortProgress(sessionmaker, tenant_id=job.tenant_id, job_id=job.id),
        data=TenantData(sessionmaker, tenant_id=job.tenant_id),
        mail=Mailer(ctx["settings"]),
        circuits=Circuits(ctx["redis"], ctx["settings"].circuits),
        soft_deadline=_soft_deadline(job, ctx["bindings"][job.name]),
        maintenance=(
            Maintenance(sessionmaker) if job.tenant_id == ctx["system_tenant_id"] else None
        ),
    )


def _soft_deadline(job: ClaimedJob, binding: Binding) -> float | None:
    """When the soft limit passes: the type's grace before the hard limit, kept per job."""
    declared = binding.job_type.soft_timeout_seconds
    if declared is None:
        return None
    grace = max(binding.job_type.timeout_seconds - declared, 0.0)
    return asyncio.get_running_loop().time() + max(job.timeout_seconds - grace, 0.0)


def _expires_at(ctx: JobRunContext, binding: Binding) -> datetime:
    return expires_at(binding.job_type, ctx["settings"])


async def _record_if_aborted(ctx: JobRunContext, binding: Binding, job: ClaimedJob) -> None:
    """Record `cancelled` if the job was asked to stop; after a shutdown it runs again."""
    async with ctx["sessionmaker"]() as session:
        if await store.is_cancel_requested(session, tenant_id=job.tenant_id, job_id=job.id):
            await store.record_cancelled(
                session,
                tenant_id=job.tenant_id,
                job_id=job.id,
                expires_at=_expires_at(ctx, binding),
            )
            await session.commit()
            record_outcome(job, "cancelled")
            log.info("job.cancelled", job_type=job.name, attempt=job.attempts)


async def _admit(ctx: JobRunContext, tenant_id: uuid.UUID) -> bool:
    """Take a slot of the tenant's concurrency quota; if none is free, put the job back.

    Before the claim, so a job put back keeps its row (`queued`, attempts unchanged); the slot
    is given back by `after_job_end`, or frees itself once the lease lapses (see `worker.quota`).
    """
    limit = await ctx["quotas"].limit_of(tenant_id)
    if limit is None:
        return True
    job_id = ctx["job_id"]
    if await take_slot(ctx["redis"], tenant_id=tenant_id, job_id=job_id, limit=limit):
        ctx["quota_slot"] = tenant_id
        return True
    ctx["reschedule"] = await _put_back(ctx, tenant_id, ctx["score"])
    return False


async def _put_back(ctx: JobRunContext, tenant_id: uuid.UUID, score: int | None) -> Delivery | None:
    """The job again, shortly and at its former place in line (None: it no longer waits)."""
    async with ctx["sessionmaker"]() as session:
        job = await store.find_job(session, tenant_id=tenant_id, job_id=uuid.UUID(ctx["job_id"]))
    if job is None or JobStatus(job.status) not in CLAIMABLE:
        return None
    QUOTA_DEFERRALS.inc()
    log.info("job.deferred", reason="tenant concurrency quota")
    delay = timedelta(seconds=ctx["settings"].worker_quota_defer_seconds)
    return replace(delivery_of(job), run_at=datetime.now(UTC) + delay, score_ms=score)


async def after_attempt(ctx: JobRunContext) -> None:
    """Once the job has ended in Redis: free its quota slot, and enqueue its next try, if any."""
    tenant_id = ctx.pop("quota_slot", None)
    if tenant_id is not None:
        try:
            await give_back_slot(ctx["redis"], tenant_id=tenant_id, job_id=ctx["job_id"])
        except (RedisError, OSError) as exc:  # the next taker drops it: its lease is gone
            log.warning("quota.release_failed", error=type(exc).__name__)
    retry = ctx.pop("reschedule", None)
    if retry is not None:
        await enqueue(ctx["redis"], [retry])


async def _hand_back(
    ctx: JobRunContext, job: ClaimedJob, handed_back: HandedBack
) -> Delivery | None:
    """Put the job back to run again shortly, its attempt not counted; its delivery, or None if
    it no longer runs (cancelled meanwhile)."""
    run_at = datetime.now(UTC) + timedelta(seconds=HAND_BACK_DELAY_SECONDS)

    async def write() -> bool:
        async with ctx["autocommit_sessionmaker"]() as session:
            moved = await store.record_handed_back(
                session, tenant_id=job.tenant_id, job_id=job.id, run_at=run_at
            )
            await session.commit()
        return moved is not None

    moved = await until_written(write, outcome="handed_back")
    log.warning("job.handed_back", job_type=job.name, cause=handed_back.cause, moved=moved)
    return replace(delivery_of(job), run_at=run_at) if moved else None


async def _record_success(
    ctx: JobRunContext, binding: Binding, job: ClaimedJob, result: dict[str, Any]
) -> None:
    # With the other jobs ending meanwhile: one statement for all (see worker.group_commit).
    success = Success(JobKey(job.tenant_id, job.id), result, _expires_at(ctx, binding))
    await until_written(lambda: ctx["successes"].submit(success), outcome="succeeded")
    record_outcome(job, "succeeded")
    log.info("job.succeeded", job_type=job.name, attempt=job.attempts)


async def _record_failure(
    ctx: JobRunContext, binding: Binding, job: ClaimedJob, failure: JobFailure
) -> Delivery | None:
    """Record a retry if one is allowed (returning its delivery), else fail the job for good."""
    will_retry = failure.is_retryable and job.attempts < job.max_tries
    delay_seconds = binding.job_type.backoff.delay_seconds(job.attempts)
    retry_at = datetime.now(UTC) + timedelta(
        seconds=max(delay_seconds, failure.retry_after_seconds)
    )
    outcome = "retrying" if will_retry else "failed"

    async def write() -> None:
        # One statement in autocommit: no BEGIN/COMMIT round trips (the commit is a no-op).
        async with ctx["autocommit_sessionmaker"]() as session:
            if will_retry:
                await store.record_retry(
                    session,
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    error=failure.error,
                    retry_at=retry_at,
                )
            else:
                await store.record_failure(
                    session,
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    error=failure.error,
                    expires_at=_expires_at(ctx, binding),
                )
            await session.commit()

    await until_written(write, outcome=outcome)
    record_outcome(job, outcome, failure.error["type"])
    log.warning(
        f"job.{outcome}", job_type=job.name, attempt=job.attempts, error_type=failure.error["type"]
    )
    return replace(delivery_of(job), run_at=retry_at) if will_retry else None
