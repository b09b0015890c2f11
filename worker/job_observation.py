"""What one run of a job tells its observers: bound log fields and, with tracing on, a span.

The runner wraps its whole work for one ARQ delivery in `JobObservation`:

    with JobObservation(job_id=..., tenant_id=...) as observed:  # job_id, tenant_id bound
        job = claim(...)
        observed.claimed(job)      # + job_name, attempt; the run span starts (tracing on)
        ...                        # the attempt, recording, hooks: all inside the span
        observed.finished(outcome)

Log fields are structlog contextvars, so every line of the run carries them, job code's
`logging` lines too. ARQ runs each job in an asyncio task of its own, which copies the context
when it starts: fields bound here never reach another job, and leaving unbinds them anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import structlog
from opentelemetry.trace import Span, SpanKind, StatusCode

from shared.jobs.rows import ClaimedJob
from shared.tracing import continue_trace, tracer
from worker.context import JobOutcome


class JobObservation:
    """Log context and run span of one delivery of one job (see the module docstring)."""

    def __init__(self, *, job_id: str, tenant_id: str) -> None:
        self._fields = {"job_id": job_id, "tenant_id": tenant_id}
        self._tokens: dict[str, contextvars.Token[Any]] = {}
        self._span_scope: AbstractContextManager[Span | None] | None = None
        self._span: Span | None = None

    def __enter__(self) -> JobObservation:
        self._tokens = dict(structlog.contextvars.bind_contextvars(**self._fields))
        return self

    def claimed(self, job: ClaimedJob) -> None:
        """The row is ours: bind what it tells, and start the span its submit's trace continues."""
        self._tokens.update(
            structlog.contextvars.bind_contextvars(job_name=job.name, attempt=job.attempts)
        )
        if tracer() is None:  # tracing off: not even the attributes are built
            return
        self._span_scope = continue_trace(
            f"run {job.name}",
            job.traceparent,
            kind=SpanKind.CONSUMER,
            attributes={
                "jobgate.job.id": str(job.id),
                "jobgate.job.name": job.name,
                "jobgate.job.queue": job.queue,
                "jobgate.job.attempt": job.attempts,
                "jobgate.tenant.id": str(job.tenant_id),
            },
        )
        self._span = self._span_scope.__enter__()

    def finished(self, outcome: JobOutcome) -> None:
        """Put the attempt's outcome on the span; a failed attempt is an error of it."""
        if self._span is None:
            return
        self._span.set_attribute("jobgate.job.outcome", outcome.status)
        if outcome.error is not None:
            error_type, message = str(outcome.error["type"]), str(outcome.error["message"])
            self._span.add_event(
                "exception", {"exception.type": error_type, "exception.message": message}
            )
            self._span.set_status(StatusCode.ERROR, error_type)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._span_scope is not None:
                if self._span is not None and isinstance(exc, asyncio.CancelledError):
                    self._span.set_attribute("jobgate.job.outcome", "interrupted")  # abort, stop
                self._span_scope.__exit__(exc_type, exc, traceback)
        finally:
            structlog.contextvars.reset_contextvars(**self._tokens)
