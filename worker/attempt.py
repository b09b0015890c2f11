"""One attempt of a job: its args validated, its function called under the time limit, its
result validated. Every way it can fail comes out as one of two exceptions: `JobFailure` (the
job's: recorded, retried or failed for good) or `HandedBack` (jobgate's own PostgreSQL or Redis
failed: the attempt is not counted, `worker.platform_failures`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from shared.contracts import Backoff, Contract
from shared.db_errors import describe_database_error
from shared.errors import (
    CircuitOpenError,
    DatabaseUnavailable,
    DependencyUnavailable,
    PermanentJobError,
    RetryableJobError,
)
from shared.jobs.rows import ClaimedJob
from worker.binding import Binding
from worker.circuit import Circuits
from worker.context import JobContext, JobRunContext
from worker.mail import Mailer
from worker.maintenance import Maintenance
from worker.progress import BestEffortProgress
from worker.tenant_data import TenantData


class HandedBack(Exception):
    """The attempt failed because jobgate's own PostgreSQL or Redis did: not the job's doing."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause  # fixed phrases (`shared.db_errors`), for the log


class JobFailure(Exception):
    """An attempt failed; `error` is what the job row records, `is_retryable` what happens next.

    Its next try, if any, comes after the delay the job chose (`chosen_delay_seconds`), else
    after the type's backoff, and never before `retry_after_seconds` (a breaker's wait).
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        is_retryable: bool,
        retry_after_seconds: float = 0,
        chosen_delay_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error = {"type": error_type, "message": message}
        self.is_retryable = is_retryable
        self.retry_after_seconds = retry_after_seconds
        self.chosen_delay_seconds = chosen_delay_seconds

    def retry_delay_seconds(self, backoff: Backoff, attempt: int) -> float:
        """Seconds from now until the try after attempt number `attempt`."""
        chosen = self.chosen_delay_seconds
        delay = backoff.delay_seconds(attempt) if chosen is None else chosen
        return max(delay, self.retry_after_seconds)


async def attempt(binding: Binding, job: ClaimedJob, context: JobContext) -> dict[str, Any]:
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
    except RetryableJobError as exc:
        raise JobFailure(
            type(exc).__name__,
            _message_of(exc),
            is_retryable=True,
            chosen_delay_seconds=exc.delay_seconds,
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


def job_context_of(ctx: JobRunContext, job: ClaimedJob) -> JobContext:
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
