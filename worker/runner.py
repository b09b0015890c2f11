"""Running one job, step by step: claim → validate args → call → validate result → record.

Job code raises `RetryableJobError` / `PermanentJobError` (any other exception counts as
retryable); only this module turns outcomes into status changes and ARQ retries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from arq.worker import Retry
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import store
from shared.contracts import Contract
from shared.errors import PermanentJobError
from shared.models import Job
from worker.binding import Binding
from worker.context import JobContext, WorkerContext
from worker.metrics import JOB_DURATION, JOBS_FINISHED

log = structlog.get_logger("jobgate.worker")


class JobFailure(Exception):
    """An attempt failed; `error` is what the job row records, `is_retryable` what happens next."""

    def __init__(self, error_type: str, message: str, *, is_retryable: bool) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.is_retryable = is_retryable


async def run_job(ctx: dict[str, Any], *, tenant_id: str) -> None:
    """The coroutine ARQ calls for every jobgate job (the payload carries only the tenant)."""
    worker = cast(WorkerContext, ctx)
    job_id, tenant = uuid.UUID(worker["job_id"]), uuid.UUID(tenant_id)
    with structlog.contextvars.bound_contextvars(job_id=str(job_id), tenant_id=tenant_id):
        job = await _claim(worker["sessionmaker"], tenant, job_id)
        if job is None:
            log.info("job.skipped", reason="not waiting (finished, cancelled or unknown)")
            return
        binding = worker["bindings"][job.name]
        started = time.monotonic()
        try:
            result = await _attempt(worker, binding, job)
        except JobFailure as failure:
            await _record_failure(worker, binding, job, failure)
        else:
            await _record_success(worker, binding, job, result)
        finally:
            JOB_DURATION.labels(job.name).observe(time.monotonic() - started)


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, job_id: uuid.UUID
) -> Job | None:
    async with sessionmaker() as session:
        job = await store.claim_job(session, tenant_id=tenant_id, job_id=job_id)
        await session.commit()
    return job


async def _attempt(worker: WorkerContext, binding: Binding, job: Job) -> dict[str, Any]:
    """Validate, call and validate again; every failure comes out as `JobFailure`."""
    args = _validate_args(binding, job)
    context = _job_context(worker, job)
    try:
        async with asyncio.timeout(job.timeout_seconds):
            outcome = await binding.function(context, args)
    except TimeoutError:
        raise JobFailure(
            "timeout", f"attempt exceeded {job.timeout_seconds:g} s", is_retryable=True
        ) from None
    except PermanentJobError as exc:
        raise JobFailure("permanent", exc.message, is_retryable=False) from None
    except Exception as exc:
        # Job code may raise anything; it is recorded by class name and retried.
        raise JobFailure(type(exc).__name__, str(exc) or repr(exc), is_retryable=True) from None
    return _validate_result(binding, outcome)


def _validate_args(binding: Binding, job: Job) -> Contract:
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


def _job_context(worker: WorkerContext, job: Job) -> JobContext:
    sessionmaker = worker["sessionmaker"]

    async def report(current: int, total: int | None, message: str | None) -> None:
        progress = {"current": current, "total": total, "message": message}
        async with sessionmaker() as session:
            await store.record_progress(
                session, tenant_id=job.tenant_id, job_id=job.id, progress=progress
            )
            await session.commit()

    return JobContext(
        job_id=job.id,
        tenant_id=job.tenant_id,
        attempt=job.attempts,
        max_tries=job.max_tries,
        worker_name=worker["worker_name"],
        report=report,
    )


def _expires_at(worker: WorkerContext, binding: Binding) -> datetime:
    ttl = binding.job_type.result_ttl_seconds
    seconds = worker["settings"].result_ttl_seconds if ttl is None else ttl
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def _record_success(
    worker: WorkerContext, binding: Binding, job: Job, result: dict[str, Any]
) -> None:
    async with worker["sessionmaker"]() as session:
        await store.record_success(
            session,
            tenant_id=job.tenant_id,
            job_id=job.id,
            result=result,
            expires_at=_expires_at(worker, binding),
        )
        await session.commit()
    JOBS_FINISHED.labels(job.name, "succeeded").inc()
    log.info("job.succeeded", job_type=job.name, attempt=job.attempts)


async def _record_failure(
    worker: WorkerContext, binding: Binding, job: Job, failure: JobFailure
) -> None:
    """Schedule a retry if one is allowed, else fail the job for good."""
    will_retry = failure.is_retryable and job.attempts < job.max_tries
    async with worker["sessionmaker"]() as session:
        if will_retry:
            delay = binding.job_type.backoff.delay_seconds(job.attempts)
            await store.record_retry(
                session,
                tenant_id=job.tenant_id,
                job_id=job.id,
                error=failure.error,
                retry_at=datetime.now(UTC) + timedelta(seconds=delay),
            )
        else:
            await store.record_failure(
                session,
                tenant_id=job.tenant_id,
                job_id=job.id,
                error=failure.error,
                expires_at=_expires_at(worker, binding),
            )
        await session.commit()
    outcome = "retrying" if will_retry else "failed"
    JOBS_FINISHED.labels(job.name, outcome).inc()
    log.warning(
        f"job.{outcome}", job_type=job.name, attempt=job.attempts, error_type=failure.error["type"]
    )
    if will_retry:
        # ARQ puts the same job id back on its queue, `delay` seconds from now.
        raise Retry(defer=delay)
