"""RFC 9457 problem details: the one place that turns errors into HTTP answers.

Every error a caller can see (jobgate's own, FastAPI's 404/405/422, an unexpected crash) is
rendered by `problem_response` as `application/problem+json`; nothing internal leaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from asyncpg.exceptions._base import DataError as AsyncpgArgumentError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from shared import errors
from shared.db_errors import describe_database_error
from shared.settings import Settings

log = structlog.get_logger("jobgate.gateway")

PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
"""RFC 9110 §15.5.2: a 401 must name the scheme that would be accepted."""

STATUS_OF: dict[type[errors.JobgateError], int] = {
    errors.JobgateError: 500,
    errors.NotFound: 404,
    errors.JobNotFound: 404,
    errors.WorkflowNotFound: 404,
    errors.UnknownJobType: 404,
    errors.TenantNotFound: 404,
    errors.ApiKeyNotFound: 404,
    errors.QueueNotFound: 404,
    errors.AuthError: 403,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.Conflict: 409,
    errors.TenantExists: 409,
    errors.IdempotencyConflict: 409,
    errors.JobStateConflict: 409,
    errors.WorkflowStateConflict: 409,
    errors.BadRequest: 400,
    errors.PayloadTooLarge: 413,
    errors.HeadersTooLarge: 431,
    errors.UnsupportedMediaType: 415,
    errors.InvalidCursor: 422,
    errors.InvalidWorkflow: 422,
    errors.UnstorableValue: 422,
    errors.WebhookUrlRefused: 422,
    errors.QueueNotAllowed: 422,
    errors.OptionRefused: 422,
    errors.RateLimited: 429,
    errors.DependencyUnavailable: 503,
    errors.DatabaseUnavailable: 503,
    errors.QueueUnavailable: 503,
    errors.JobError: 500,
    errors.RetryableJobError: 500,
    errors.CircuitOpenError: 500,
    errors.PermanentJobError: 500,
}
"""HTTP status of each error class (a test checks that every class is listed)."""


MAX_ISSUES = 20
"""The most `errors` a problem lists: a body of 100 000 unknown members has as many problems,
and naming each would make the answer ten times the request."""


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="Where in the request the problem is.")
    msg: str = Field(description="What is wrong, for humans.")
    type: str = Field(description="A stable identifier of the kind of problem.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="URI reference naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The request path.")
    errors: list[ValidationIssue] | None = Field(
        None, description=f"Validation failures (422): the first {MAX_ISSUES}."
    )
    errors_omitted: int | None = Field(
        None,
        ge=1,
        description=f"How many more failures there were beyond the {MAX_ISSUES} in `errors`"
        " (absent when none were left out).",
    )


def problem_document(*, status: int, code: str, detail: str, instance: str) -> dict[str, Any]:
    """The members every problem has (`Problem` without `errors`)."""
    return {
        "type": f"/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    issues: Sequence[Mapping[str, Any]] | None = None,
    issue_count: int | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """The problem+json response for one error (RFC 9457 allows extension members).

    `errors` lists the first `MAX_ISSUES` of `issues`; `errors_omitted` counts the rest, of
    `issue_count` in all when the caller passed only the first ones.
    """
    body = problem_document(status=status, code=code, detail=detail, instance=request.url.path)
    if issues is not None:
        listed = list(issues[:MAX_ISSUES])
        body["errors"] = listed
        omitted = (len(issues) if issue_count is None else issue_count) - len(listed)
        if omitted > 0:
            body["errors_omitted"] = omitted
    body.update(extensions or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def rate_limit_headers(*, limit: int, remaining: int, reset_seconds: int) -> dict[str, str]:
    """The `RateLimit-*` fields of the IETF draft (httpapi-ratelimit-headers), bucket-shaped.

    `Limit` is the bucket's size (the burst), `Remaining` the whole tokens left, `Reset` the
    seconds until the bucket is full again.
    """
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset_seconds),
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries declaring that a route may answer these problems."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


# One `type` per condition, whichever layer noticed it: the body guard raises 413 as an
# HTTPException once a chunked body is being read, and as `PayloadTooLarge` before that.
_HTTP_CODES = {413: errors.PayloadTooLarge.code}


def _unreadable_body(exc: HTTPException) -> str | None:
    """Why FastAPI could not parse a JSON body (its 400 carries the cause), in callers' words."""
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    # json.loads recurses once per nesting level: 100 000 `[` exhaust Python's stack.
    if isinstance(cause, RecursionError):
        return "The request body is not JSON jobgate can read: it nests too deeply."
    if isinstance(cause, UnicodeDecodeError):
        return "The request body is not valid JSON: it is not valid UTF-8."
    if isinstance(cause, ValueError):  # e.g. an integer of more than 4300 digits
        return "The request body is not JSON jobgate can read."
    return None


def _status_of(error: errors.JobgateError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


_MAX_LOC_CHARS = 128


def _issue(error: Mapping[str, Any]) -> dict[str, Any]:
    # Only loc, msg and type: pydantic's `input` and `ctx` could echo secrets or huge values.
    loc = [_cut(part) if isinstance(part, str) else part for part in error.get("loc", ())]
    return {"loc": loc, "msg": str(error.get("msg")), "type": error["type"]}


def _cut(part: str) -> str:
    """A `loc` member, shortened: a caller's unknown field name can be a megabyte long."""
    return part if len(part) <= _MAX_LOC_CHARS else f"{part[:_MAX_LOC_CHARS]}..."


def _headers_of(error: errors.JobgateError) -> dict[str, str] | None:
    """Headers an error carries itself (a 429's wait and limits)."""
    if isinstance(error, errors.RateLimited):
        return rate_limit_headers(
            limit=error.limit, remaining=error.remaining, reset_seconds=error.reset_seconds
        ) | {"Retry-After": str(error.retry_after_seconds)}
    return None


_DATA_EXCEPTION = "22"
"""SQLSTATE class 22, "data exception": PostgreSQL refused a value, the connection is fine."""


def _is_refused_value(exc: BaseException) -> bool:
    """Whether the database (or asyncpg encoding a parameter) refused a value of the request.

    SQLAlchemy's asyncpg dialect wraps such errors in a plain `DBAPIError` (asyncpg's class-22
    errors) or an `InterfaceError` (asyncpg's own argument checks: out of int32/int64 range,
    text that is not UTF-8), so the driver's error under it is what tells them from an outage.
    """
    if isinstance(exc, DataError | AsyncpgArgumentError | asyncpg.DataError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    for cause in (exc.orig, exc.orig.__cause__ if exc.orig is not None else None):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(cause, AsyncpgArgumentError) or (
            isinstance(sqlstate, str) and sqlstate.startswith(_DATA_EXCEPTION)
        ):
            return True
    return False


def _translate_dependency_error(exc: Exception) -> errors.JobgateError | None:
    """What a database or connection error means to the caller; None: a bug (a 500)."""
    if isinstance(exc, IntegrityError):
        return None  # the store translates the expected ones
    if _is_refused_value(exc):
        # The caller's value, not an outage: a 503 would have it retry the same request
        # forever. Validation should have refused it first; the log names the kind that got by.
        return errors.UnstorableValue()
    # A plain OSError (refused, no socket, TimeoutError) is asyncpg failing to connect:
    # Redis failures are RedisError, which `shared.jobs.enqueue` turns into QueueUnavailable.
    if isinstance(exc, DBAPIError | PoolTimeout | OSError):
        return errors.DatabaseUnavailable(describe_database_error(exc))
    return errors.DependencyUnavailable()


def _issues_of(error: errors.JobgateError) -> list[dict[str, object]] | None:
    """The `errors` member of a 422 raised by jobgate itself (one issue per problem)."""
    if isinstance(error, errors.InvalidWorkflow):
        return error.issues
    if isinstance(error, errors.WebhookUrlRefused | errors.QueueNotAllowed | errors.OptionRefused):
        return error.issues
    return None


def _log_error(exc: errors.JobgateError) -> None:
    """Log what an operator should hear of: an outage, with its cause ("too many
    connections"), whether a store raised it (`shared.jobs.raw_sql`, `shared.jobs.enqueue`) or
    it was translated from the driver; a value that validation let through."""
    error = type(exc.__cause__).__name__ if exc.__cause__ is not None else None
    if isinstance(exc, errors.DependencyUnavailable):
        cause = exc.cause if isinstance(exc, errors.DatabaseUnavailable) else None
        log.warning("dependency.unavailable", code=exc.code, cause=cause, error=error)
    elif isinstance(exc, errors.UnstorableValue):
        log.warning("request.unstorable_value", code=exc.code, error=error)


def install_problem_handlers(app: FastAPI, settings: Settings) -> None:
    """Make every error answer as problem+json."""
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}

    async def on_jobgate_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.JobgateError)  # noqa: S101 (registered for this class)
        _log_error(exc)
        status = _status_of(exc)
        headers = _headers_of(exc) or {503: retry_after, 401: BEARER_CHALLENGE}.get(status)
        issues = _issues_of(exc)
        return problem_response(
            request,
            status=status,
            code=exc.code,
            detail=exc.message,
            headers=headers,
            issues=issues,
        )

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        found = exc.errors()
        issues = [_issue(error) for error in found[:MAX_ISSUES]]  # only those are listed
        if any(issue["type"] == "json_invalid" for issue in issues):
            return problem_response(
                request,
                status=400,
                code="malformed-json",
                detail="The request body is not valid JSON.",
                issues=issues,
            )
        return problem_response(
            request,
            status=422,
            code="validation-error",
            detail="The request does not match the schema; see `errors`.",
            issues=issues,
            issue_count=len(found),
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)  # noqa: S101
        unreadable = _unreadable_body(exc)
        if unreadable is not None:
            return problem_response(request, status=400, code="malformed-json", detail=unreadable)
        phrase = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else phrase
        code = _HTTP_CODES.get(exc.status_code) or phrase.lower().replace(" ", "-").replace("'", "")
        return problem_response(
            request, status=exc.status_code, code=code, detail=detail, headers=exc.headers
        )

    async def on_dependency_error(request: Request, exc: Exception) -> JSONResponse:
        translated = _translate_dependency_error(exc)
        if translated is None:
            return await on_unexpected(request, exc)
        translated.__cause__ = exc  # for the log line `on_jobgate_error` writes
        return await on_jobgate_error(request, translated)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("request.crashed", path=request.url.path, exc_info=exc)
        return problem_response(
            request,
            status=500,
            code="internal-error",
            detail="An unexpected error occurred; it has been logged with this request's id.",
        )

    app.add_exception_handler(errors.JobgateError, on_jobgate_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    # asyncpg.DataError: class-22 errors of statements run on asyncpg itself (`submit_sql`).
    for dependency_error in (DBAPIError, PoolTimeout, OSError, asyncpg.DataError):
        app.add_exception_handler(dependency_error, on_dependency_error)
    app.add_exception_handler(Exception, on_unexpected)
