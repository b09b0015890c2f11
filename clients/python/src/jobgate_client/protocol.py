"""jobgate's HTTP API without any I/O: what to send for each call, and how to read the answer.

The sync and async clients both build their requests here and read answers here, so the two
cannot drift apart; they only differ in how they send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from jobgate_client.errors import JobgateError
from jobgate_client.models import Attempt, Job, JobPage, JobRequest, JobStatus, SubmitOptions

MAX_WAIT_SECONDS = 60.0
"""The longest `?wait=` jobgate holds a request (a longer wait is several requests)."""

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "jobgate-client-python/0.1.0"


@dataclass(frozen=True, slots=True)
class Call:
    """One request to make; `hold_seconds` is how long jobgate may hold it on purpose."""

    method: str
    path: str
    json: Any = None
    params: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0


def settings_from_env(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The gateway's URL and the API key: as given, else `JOBGATE_URL` / `JOBGATE_API_KEY`."""
    base_url = base_url or os.environ.get("JOBGATE_URL")
    api_key = api_key or os.environ.get("JOBGATE_API_KEY")
    if not base_url:
        raise ValueError("no jobgate URL: pass base_url or set JOBGATE_URL")
    if not api_key:
        raise ValueError("no API key: pass api_key or set JOBGATE_API_KEY")
    return base_url, api_key


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def timeout_for(call: Call, timeout_seconds: float) -> float:
    """The client's timeout, plus the time jobgate may hold this request before answering."""
    return timeout_seconds + call.hold_seconds


def submit_call(
    name: str,
    args: Mapping[str, Any] | None,
    options: SubmitOptions,
    idempotency_key: str | None,
) -> Call:
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    return Call("POST", f"/jobs/{_segment(name)}", json=_job_body(args, options), headers=headers)


def batch_call(name: str, jobs: Iterable[JobRequest]) -> Call:
    bodies = [_job_body(job.get("args"), job.get("options", {})) for job in jobs]
    return Call("POST", f"/jobs/{_segment(name)}/batch", json={"jobs": bodies})


def get_call(job_id: str, wait: float) -> Call:
    wait = min(max(wait, 0.0), MAX_WAIT_SECONDS)
    params = (("wait", f"{wait:g}"),) if wait > 0 else ()
    return Call("GET", f"/jobs/{_segment(job_id)}", params=params, hold_seconds=wait)


def list_call(
    *,
    status: Iterable[JobStatus] = (),
    name: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call:
    params = [("status", value) for value in status] + [("name", value) for value in name]
    params += [("label", f"{key}:{value}") for key, value in (labels or {}).items()]
    optional = {
        "created_after": created_after.isoformat() if created_after else None,
        "created_before": created_before.isoformat() if created_before else None,
        "limit": None if limit is None else str(limit),
        "cursor": cursor,
    }
    params += [(key, value) for key, value in optional.items() if value is not None]
    return Call("GET", "/jobs", params=tuple(params))


def attempts_call(job_id: str) -> Call:
    return Call("GET", f"/jobs/{_segment(job_id)}/attempts")


def cancel_call(job_id: str) -> Call:
    return Call("POST", f"/jobs/{_segment(job_id)}/cancel")


def retry_call(job_id: str) -> Call:
    return Call("POST", f"/jobs/{_segment(job_id)}/retry")


def read_job(response: httpx.Response) -> Job:
    """The job in a successful answer; a `JobgateError` for an error answer."""
    return Job.from_json(_body(response))


def read_batch(response: httpx.Response) -> list[Job]:
    return [Job.from_json(item) for item in _body(response)["jobs"]]


def read_page(response: httpx.Response) -> JobPage:
    return JobPage.from_json(_body(response))


def read_attempts(response: httpx.Response) -> list[Attempt]:
    return [Attempt.from_json(item) for item in _body(response)["attempts"]]


def next_wait(deadline: float) -> float | None:
    """How long the next long-poll of `wait()` may hold; None once the deadline has passed."""
    remaining = deadline - time.monotonic()
    return None if remaining <= 0 else min(remaining, MAX_WAIT_SECONDS)


def _body(response: httpx.Response) -> Any:
    if response.is_error:
        raise JobgateError.from_response(response)
    return response.json()


def _job_body(args: Mapping[str, Any] | None, options: SubmitOptions) -> dict[str, Any]:
    body: dict[str, Any] = {"args": dict(args or {})}
    if options:
        body["options"] = {key: _option_value(value) for key, value in options.items()}
    return body


def _option_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _segment(value: str) -> str:
    """One path segment: a job id or type name can never reach another route."""
    return quote(str(value), safe="")
