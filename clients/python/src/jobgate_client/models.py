"""What jobgate answers with: jobs and pages of jobs, as frozen dataclasses.

Parsing keeps to the fields this client knows and ignores the rest, so a newer gateway that
adds fields does not break an older client; the whole answer stays available as `raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict, cast

JobStatus = Literal[
    "scheduled", "queued", "running", "retrying", "succeeded", "failed", "cancelled", "expired"
]
"""Where a job is in its life; see `TERMINAL_STATUSES`."""

Priority = Literal["critical", "default", "low"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})
"""Statuses a job never leaves."""


class SubmitOptions(TypedDict, total=False):
    """How to run a job; each one left out takes the job type's default."""

    priority: Priority
    delay_seconds: float
    run_at: datetime | str
    """RFC 3339 with an offset, or an aware `datetime`."""
    start_by: datetime | str
    """Start deadline: not started by then, the job ends `expired` without running."""
    start_within_seconds: float
    """Start deadline counted from when the job may start; not with `start_by`."""
    max_tries: int
    timeout_seconds: float
    queue: str
    """One of the queues the job type may run on (`GET /job-types`); any other is a 422."""
    labels: Mapping[str, str]
    webhook_url: str
    concurrency_key: str
    """Instead of the key the job type's concurrency limit reads from the args."""


class JobRequest(TypedDict, total=False):
    """One job of a batch: its args and, optionally, its own options."""

    args: Mapping[str, Any]
    options: SubmitOptions


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job's last attempt failed: `timeout`, `permanent`, `invalid_args` or a class name."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What the job last reported about its own progress."""

    current: int
    total: int | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Job:
    """A job, as jobgate shows it to its owner (`GET /jobs/{id}`)."""

    id: str
    name: str
    status: JobStatus
    args: dict[str, Any]
    result: dict[str, Any] | None
    error: JobError | None
    priority: Priority
    queue: str
    attempts: int
    max_tries: int
    progress: JobProgress | None
    idempotency_key: str | None
    concurrency_key: str | None
    labels: dict[str, str]
    retry_of: str | None
    retried_by: str | None
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    start_by: datetime | None
    """Its start deadline, if it has one."""
    raw: dict[str, Any] = field(repr=False, compare=False)
    """The answer as sent, with any field this client does not know (e.g. `webhook`)."""

    @property
    def is_terminal(self) -> bool:
        """Has the job finished for good (`succeeded`, `failed`, `cancelled` or `expired`)?"""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        """Read a job from its JSON object."""
        error, progress = data.get("error"), data.get("progress")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            status=cast(JobStatus, data["status"]),
            args=dict(data.get("args") or {}),
            result=None if data.get("result") is None else dict(data["result"]),
            error=None if error is None else JobError(str(error["type"]), str(error["message"])),
            priority=cast(Priority, data.get("priority", "default")),
            queue=str(data.get("queue", "")),
            attempts=int(data.get("attempts", 0)),
            max_tries=int(data.get("max_tries", 0)),
            progress=None
            if progress is None
            else JobProgress(
                int(progress["current"]), progress.get("total"), progress.get("message")
            ),
            idempotency_key=data.get("idempotency_key"),
            concurrency_key=data.get("concurrency_key"),
            labels={str(key): str(value) for key, value in (data.get("labels") or {}).items()},
            retry_of=data.get("retry_of"),
            retried_by=data.get("retried_by"),
            created_at=_time(data["created_at"]),
            scheduled_at=_optional_time(data.get("scheduled_at")),
            started_at=_optional_time(data.get("started_at")),
            finished_at=_optional_time(data.get("finished_at")),
            expires_at=_optional_time(data.get("expires_at")),
            start_by=_optional_time(data.get("start_by")),
            raw=dict(data),
        )


AttemptOutcome = Literal["running", "succeeded", "retrying", "failed", "cancelled", "lost"]
"""How an attempt ended: the status it moved its job to; `running` while it runs; `lost` when
its worker stopped before recording an outcome (killed, crashed, cut off at shutdown)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a job (`GET /jobs/{id}/attempts`)."""

    number: int
    outcome: AttemptOutcome
    worker: str | None
    """The worker process that ran it (`host:pid`); None while running, or when lost."""
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: JobError | None
    """Why it failed; None if it did not."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attempt:
        """Read an attempt from its JSON object."""
        error, duration = data.get("error"), data.get("duration_seconds")
        return cls(
            number=int(data["number"]),
            outcome=cast(AttemptOutcome, data["outcome"]),
            worker=data.get("worker"),
            started_at=_optional_time(data.get("started_at")),
            finished_at=_optional_time(data.get("finished_at")),
            duration_seconds=None if duration is None else float(duration),
            error=None if error is None else JobError(str(error["type"]), str(error["message"])),
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of `GET /jobs`, newest first; pass `next_cursor` as `cursor` for the next."""

    items: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobPage:
        """Read a page from its JSON object."""
        return cls(
            items=[Job.from_json(item) for item in data["items"]],
            next_cursor=data.get("next_cursor"),
        )


def _time(value: str) -> datetime:
    # Python 3.11's fromisoformat reads every RFC 3339 form jobgate sends, `Z` included.
    return datetime.fromisoformat(value)


def _optional_time(value: str | None) -> datetime | None:
    return None if value is None else _time(value)
