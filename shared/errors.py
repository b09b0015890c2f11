"""Every error jobgate raises on purpose.

    JobgateError
    ├── NotFound
    │   ├── JobNotFound
    │   ├── WorkflowNotFound
    │   ├── UnknownJobType
    │   ├── TenantNotFound
    │   ├── ApiKeyNotFound
    │   └── QueueNotFound         no job type runs on this queue
    ├── AuthError
    │   ├── Unauthenticated
    │   └── Forbidden
    ├── Conflict
    │   ├── TenantExists
    │   ├── IdempotencyConflict
    │   ├── JobStateConflict
    │   └── WorkflowStateConflict
    ├── BadRequest
    │   ├── PayloadTooLarge
    │   ├── HeadersTooLarge       too many header fields, or too many bytes of them (431)
    │   ├── UnsupportedMediaType
    │   ├── InvalidCursor
    │   ├── InvalidWorkflow       a workflow that cannot run (422, one issue per problem)
    │   ├── WebhookUrlRefused     a `webhook_url` jobgate may not call (422, one issue per URL)
    │   ├── QueueNotAllowed       `options.queue` names a queue the job type may not run on (422)
    │   ├── OptionRefused         a submit option the job type does not take (422)
    │   └── UnstorableValue       PostgreSQL refused a value validation let through (422)
    ├── RateLimited               the tenant submitted faster than its rate limit allows
    ├── DependencyUnavailable
    │   ├── DatabaseUnavailable
    │   └── QueueUnavailable
    └── JobError                  raised by job code, turned into status changes by the worker
        ├── RetryableJobError     its `delay_seconds`, if given, replaces the type's backoff
        │   └── CircuitOpenError  a circuit breaker refused the call (`worker.circuit`)
        └── PermanentJobError

The gateway maps each class to an HTTP status in one table (`gateway/problems.py`).

    SettingNotSet                 outside the tree: no request causes it, a process cannot start
    InvalidSettings               likewise: a setting is set but refused
"""

from __future__ import annotations

import math

from shared.delays import MAX_DELAY_SECONDS


class JobgateError(Exception):
    """Something went wrong in jobgate."""

    code = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)


class NotFound(JobgateError):
    """The resource does not exist."""

    code = "not-found"


class JobNotFound(NotFound):
    """No job with this id exists for this tenant."""

    code = "job-not-found"


class WorkflowNotFound(NotFound):
    """No workflow with this id exists for this tenant."""

    code = "workflow-not-found"


class UnknownJobType(NotFound):
    """No job type with this name is registered."""

    code = "unknown-job-type"


class TenantNotFound(NotFound):
    """No tenant with this id or name exists."""

    code = "tenant-not-found"


class ApiKeyNotFound(NotFound):
    """No API key with this id exists."""

    code = "api-key-not-found"


class QueueNotFound(NotFound):
    """No job type runs on a queue of this name."""

    code = "queue-not-found"


class AuthError(JobgateError):
    """The caller may not do this."""

    code = "auth"


class Unauthenticated(AuthError):
    """A valid `Authorization: Bearer <api-key>` header is required."""

    code = "unauthenticated"


class Forbidden(AuthError):
    """The credentials are valid but lack the scope this operation needs."""

    code = "forbidden"


class Conflict(JobgateError):
    """The request conflicts with the current state."""

    code = "conflict"


class TenantExists(Conflict):
    """A tenant with this name already exists."""

    code = "tenant-exists"


class IdempotencyConflict(Conflict):
    """This idempotency key was already used with different arguments."""

    code = "idempotency-conflict"


class JobStateConflict(Conflict):
    """The job's status does not allow this operation."""

    code = "job-state-conflict"


class WorkflowStateConflict(Conflict):
    """The workflow's status does not allow this operation."""

    code = "workflow-state-conflict"


class BadRequest(JobgateError):
    """The request cannot be processed as sent."""

    code = "bad-request"


class PayloadTooLarge(BadRequest):
    """The request body exceeds the configured limit."""

    code = "payload-too-large"


class HeadersTooLarge(BadRequest):
    """The request's header fields exceed the configured limits."""

    code = "request-header-fields-too-large"


class UnsupportedMediaType(BadRequest):
    """The request body must be JSON (`Content-Type: application/json`)."""

    code = "unsupported-media-type"


class InvalidCursor(BadRequest):
    """The pagination cursor is not one this service issued."""

    code = "invalid-cursor"


class InvalidWorkflow(BadRequest):
    """The workflow cannot run as submitted; see `errors`."""

    code = "invalid-workflow"

    def __init__(self, message: str | None = None, *, issues: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.issues = issues  # {loc, msg, type} each, as a 422's `errors`


class WebhookUrlRefused(BadRequest):
    """A `webhook_url` points where webhooks may not go; see `errors`."""

    code = "webhook-url-refused"

    def __init__(self, message: str | None = None, *, issues: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.issues = issues  # {loc, msg, type} each, as a 422's `errors`


class QueueNotAllowed(BadRequest):
    """The job type may not run on this queue; `GET /job-types` lists the queues it may."""

    code = "queue-not-allowed"

    def __init__(
        self, message: str | None = None, *, issues: list[dict[str, object]] | None = None
    ) -> None:
        super().__init__(message)
        self.issues = issues  # {loc, msg, type} each, where the caller can say where (HTTP)


class OptionRefused(BadRequest):
    """A submit option the job type does not take; see `errors`."""

    code = "option-refused"

    def __init__(self, message: str | None = None, *, issues: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.issues = issues  # {loc, msg, type} each, as a 422's `errors`


class UnstorableValue(BadRequest):
    """The request holds a value the database cannot store (out of range, or not valid text)."""

    code = "unstorable-value"


class RateLimited(JobgateError):
    """This tenant submits faster than its rate limit allows; retry after `Retry-After` seconds."""

    code = "rate-limited"

    def __init__(
        self,
        message: str | None = None,
        *,
        limit: int,
        remaining: int,
        reset_seconds: int,
        retry_after_seconds: int,
    ) -> None:
        super().__init__(message)
        self.limit = limit  # the bucket's size (burst)
        self.remaining = remaining
        self.reset_seconds = reset_seconds  # until the bucket is full again
        self.retry_after_seconds = retry_after_seconds


class DependencyUnavailable(JobgateError):
    """A service jobgate depends on is unavailable; try again shortly."""

    code = "dependency-unavailable"


class DatabaseUnavailable(DependencyUnavailable):
    """PostgreSQL is unavailable; try again shortly."""

    code = "database-unavailable"

    def __init__(self, cause: str | None = None) -> None:
        # `cause` comes from `shared.db_errors`: fixed phrases, never the server's own text.
        super().__init__(
            f"PostgreSQL is unavailable: {cause}; try again shortly." if cause else None
        )
        self.cause = cause


class QueueUnavailable(DependencyUnavailable):
    """Redis is unavailable; try again shortly."""

    code = "queue-unavailable"


class JobError(JobgateError):
    """A job function failed."""

    code = "job-error"


class RetryableJobError(JobError):
    """The job failed in a way that may succeed if tried again."""

    code = "retryable"
    delay_seconds: float | None = None
    """Seconds until the next try, chosen by the job (an upstream's `Retry-After`); None: the
    job type's backoff. Tries remain counted: with none left, the job fails all the same."""

    def __init__(self, message: str | None = None, *, delay_seconds: float | None = None) -> None:
        super().__init__(message)
        self.delay_seconds = _checked_delay(delay_seconds)


def _checked_delay(delay_seconds: float | None) -> float | None:
    """`delay_seconds` as a float, or `TypeError`/`ValueError` raised where the job made it."""
    if delay_seconds is None:
        return None
    # A bool is an int to Python, but `delay_seconds=True` is a slip, not one second.
    if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, int | float):
        kind = type(delay_seconds).__name__
        raise TypeError(f"delay_seconds must be a number of seconds, not {kind}")
    if not (math.isfinite(delay_seconds) and 0 <= delay_seconds <= MAX_DELAY_SECONDS):
        raise ValueError(
            f"delay_seconds must be from 0 to {MAX_DELAY_SECONDS} (366 days), not {delay_seconds!r}"
        )
    return float(delay_seconds)


class CircuitOpenError(RetryableJobError):
    """A circuit breaker is open: its dependency failed too often, so the call was not made."""

    code = "circuit-open"

    def __init__(self, message: str | None = None, *, retry_after_seconds: float = 0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds  # until a trial call may pass


class PermanentJobError(JobError):
    """The job failed in a way that retrying cannot fix."""

    code = "permanent"


class SettingNotSet(RuntimeError):
    """A setting this process needs is not set; the message says what to set it to."""


class InvalidSettings(RuntimeError):
    """Settings were refused: one line per problem, naming the variable and never its value.

    Raised instead of pydantic's `ValidationError`, whose text quotes the input: for a check
    across fields that input is every setting, the admin token and URL passwords included.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
