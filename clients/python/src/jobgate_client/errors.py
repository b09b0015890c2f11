"""Errors this client raises.

    JobgateError       jobgate answered with an error (an RFC 9457 problem document)
    JobWaitTimeout     `wait()` ran out of time before the job finished (also a TimeoutError)

Network failures are httpx's own (`httpx.TransportError` and its subclasses), not wrapped:
they mean jobgate never answered, so there is no problem document to show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from jobgate_client.models import Job

PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "errors"})


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One reason a request was refused (422): where (`loc`), what (`msg`), which kind (`type`)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str


class JobgateError(Exception):
    """jobgate answered with an error; the attributes are its problem document's members.

    `retry_after` (seconds) is set when the answer says when to try again: `429` (the tenant's
    rate limit) and `503` (PostgreSQL or Redis unavailable; nothing was stored).
    """

    def __init__(
        self,
        *,
        status: int,
        title: str,
        detail: str,
        type: str = "about:blank",  # RFC 9457's member name, shadowing the builtin here only
        instance: str | None = None,
        errors: Sequence[ValidationIssue] = (),
        retry_after: float | None = None,
        request_id: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors = tuple(errors)
        self.retry_after = retry_after
        self.request_id = request_id
        """The answer's `X-Request-ID`: quote it when asking the operators about it."""
        self.extensions = dict(extensions or {})
        """Problem members beyond RFC 9457's own."""

    @property
    def code(self) -> str:
        """The problem's stable slug: `job-not-found` for type `/problems/job-not-found`."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_response(cls, response: httpx.Response) -> JobgateError:
        """The error an answer of status ≥ 400 stands for, problem+json or not."""
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        problem: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
        status = response.status_code
        return cls(
            status=int(problem.get("status", status)),
            title=str(problem.get("title") or _phrase(status)),
            detail=str(problem.get("detail") or response.text[:500] or _phrase(status)),
            type=str(problem.get("type") or "about:blank"),
            instance=problem.get("instance"),
            errors=[_issue(item) for item in problem.get("errors") or ()],
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            request_id=response.headers.get("X-Request-ID"),
            extensions={k: v for k, v in problem.items() if k not in PROBLEM_MEMBERS},
        )


class JobWaitTimeout(TimeoutError):
    """The job was not finished when `wait()` gave up; `job` is how it was last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g} s")
        self.job = job
        self.timeout = timeout


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # `-0000`: a UTC time of unknown origin (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _issue(item: Mapping[str, Any]) -> ValidationIssue:
    return ValidationIssue(
        loc=tuple(item.get("loc") or ()),
        msg=str(item.get("msg", "")),
        type=str(item.get("type", "")),
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
