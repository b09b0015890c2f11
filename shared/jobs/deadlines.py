"""Start deadlines: a job not started by its `start_by` ends `expired` and never runs.

A job gets its deadline at submit (`SubmitOptions.start_by` or `start_within_seconds`, else
its type's `start_within_seconds`), and keeps it through every retry. Three statements end a
job that misses it, each owing the job's webhook in the same statement:

- the claim (`status_changes.claim_jobs`): a worker that picks up an overdue job expires it
  instead of starting it, so a job is never started late, whichever way it was picked up;
- the sweep (`expire_overdue`, run by the reconciler's pass): waiting jobs that no worker picks
  up (a paused queue, no worker running), in bounded batches;
- a failed attempt whose retry would start after the deadline
  (`status_changes.expire_instead_of_retry`, with `retry_too_late_error`).

A claim and the sweep lock the row they change (the sweep skips rows a claim holds), so a job
is expired or started, once, never both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.jobs.deadline_sql import EXPIRED_TYPE, SWEEP_SQL
from shared.jobs.raw_sql import fetch
from shared.jobs.retention import Retention
from shared.jobs.rows import ClaimedJob

_MAX_MESSAGE_CHARS = 500


def is_too_late(start_by: datetime | None, start: datetime) -> bool:
    """Whether a try starting at `start` would miss the deadline `start_by` (None: no deadline)."""
    return start_by is not None and start > start_by


async def expire_overdue(
    engine: AsyncEngine, *, retention: Retention, batch_size: int
) -> list[ClaimedJob]:
    """Expire up to `batch_size` waiting jobs past their deadline, across tenants (one
    autocommitted statement); the jobs expired, soonest deadline first.

    Crosses tenants by design, like the reconciler that calls it: it ends jobs on their own
    terms, it returns no job data to anyone.
    """
    rows = await fetch(
        engine, SWEEP_SQL, batch_size, retention.by_type_json, retention.default_seconds
    )
    return [ClaimedJob(*row) for row in rows]


def retry_too_late_error(retry_at: datetime, last_error: dict[str, Any]) -> dict[str, Any]:
    """The error of a job whose retry would have started after its deadline: says so, and
    keeps the last attempt's error in its message."""
    message = (
        f"its next try, at {retry_at.isoformat(timespec='seconds')}, would start after its"
        f" start deadline (start_by); its last attempt failed with {last_error['type']}:"
        f" {last_error['message']}"
    )
    return {"type": EXPIRED_TYPE, "message": message[:_MAX_MESSAGE_CHARS]}
