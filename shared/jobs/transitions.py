"""The worker's two hot status changes, for many jobs in one statement each.

A worker starts and finishes jobs by the hundred per second. Claiming or recording them one
statement (and one commit) at a time made PostgreSQL's commits and the driver's round trips the
worker's main cost; here a whole poll's jobs are claimed together, and the successes that end
while one write is under way are recorded together by the next (see `worker.group_commit`).

They are `store`'s transitions in batch form: the same statuses allowed from (`ALLOWED_FROM`),
the same columns set, and a webhook delivery owed by each job that succeeds, in the statement
that moves it. Each job is matched on its tenant and its id together, from the pairs given:
a statement cannot reach a job of a tenant it was not given.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.ids import new_id
from shared.jobs.raw_sql import fetch
from shared.jobs.sql_rows import row_parameters, row_source
from shared.models import Job, WebhookDelivery
from shared.status import ALLOWED_FROM, JobStatus

_JOB = Job.__tablename__
_DELIVERY = WebhookDelivery.__tablename__


def _statuses(target: JobStatus) -> str:
    # Our own enum's values, not input: safe to write into the SQL text.
    return ", ".join(f"'{status.value}'" for status in sorted(ALLOWED_FROM[target]))


@dataclass(frozen=True)
class JobKey:
    """Which job: its tenant and its id, always together."""

    tenant_id: uuid.UUID
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as a worker runs it: the columns the run needs, without an ORM object's upkeep
    (building ORM objects was a tenth of a busy worker's time)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    queue: str
    priority: str
    status: str
    args: dict[str, Any]
    error: dict[str, Any] | None
    attempts: int
    max_tries: int
    timeout_seconds: float
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    traceparent: str | None
    workflow_id: uuid.UUID | None

    @classmethod
    def of(cls, job: Job) -> ClaimedJob:
        """The same facts, from a job loaded through the ORM."""
        return cls(*(getattr(job, name) for name in _CLAIMED_COLUMNS))


_CLAIMED_COLUMNS = tuple(field.name for field in fields(ClaimedJob))
# Column names checked against the table at import: a typo fails here, not in SQL.
_RETURNED = ", ".join(f"job.{Job.__table__.c[name].name}" for name in _CLAIMED_COLUMNS)


@dataclass(frozen=True)
class Success:
    """A running job's successful attempt, to record."""

    key: JobKey
    result: dict[str, Any]
    expires_at: datetime


# The f-strings splice in only table names, column names and our own status values; every
# value travels as a bound parameter (hence `noqa: S608`).
#
# The claim commits asynchronously (`synchronous_commit` off for its own transaction only):
# the job starts without waiting for the WAL flush, which after an idle spell was 0.5 ms of a
# 5 ms pickup on the bench's VM. What that risks: a PostgreSQL crash (or failover) in the
# fraction of a second before the WAL writer, or any later synchronous commit, flushes it
# forgets the claim; the row is `queued` again, its worker's outcome then matches nothing, and
# the job runs again from the queue with that start uncounted. At least once, as before; no job
# is lost. Every other write (submit, outcomes, cancel) stays synchronous.
def _claim_sql(one_row: bool) -> str:
    taken = row_source(["uuid", "uuid"], first=1, one_row=one_row)
    return f"""
WITH taken AS (
    SELECT * FROM {taken} AS taken (tenant_id, id)
    WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
)
UPDATE {_JOB} AS job
SET status = '{JobStatus.RUNNING.value}', attempts = job.attempts + 1, started_at = now(),
    progress = NULL
FROM taken
WHERE job.tenant_id = taken.tenant_id AND job.id = taken.id
  AND job.status IN ({_statuses(JobStatus.RUNNING)})
  AND (job.status <> '{JobStatus.RUNNING.value}' OR $3::integer IS NULL
       OR job.attempts < job.max_tries + $3::integer)
RETURNING {_RETURNED}
"""  # noqa: S608


_CLAIM_SQL = {one_row: _claim_sql(one_row) for one_row in (True, False)}


def _success_sql(one_row: bool) -> str:
    done = row_source(["uuid", "uuid", "jsonb", "timestamptz", "uuid"], first=1, one_row=one_row)
    return f"""
WITH done AS (
    SELECT * FROM {done} AS done (tenant_id, id, result, expires_at, delivery_id)
), moved AS (
    UPDATE {_JOB} AS job
    SET status = '{JobStatus.SUCCEEDED.value}', result = done.result, error = NULL,
        finished_at = now(), expires_at = done.expires_at
    FROM done
    WHERE job.tenant_id = done.tenant_id AND job.id = done.id
      AND job.status IN ({_statuses(JobStatus.SUCCEEDED)})
    RETURNING job.tenant_id, job.id, job.webhook_url, done.delivery_id
), owed AS (
    INSERT INTO {_DELIVERY} (id, tenant_id, job_id, url)
    SELECT delivery_id, tenant_id, id, webhook_url FROM moved WHERE webhook_url IS NOT NULL
)
SELECT tenant_id, id FROM moved
"""  # noqa: S608


_SUCCESS_SQL = {one_row: _success_sql(one_row) for one_row in (True, False)}


async def claim_jobs(
    engine: AsyncEngine, keys: Sequence[JobKey], *, lost_attempts_allowed: int | None = None
) -> list[ClaimedJob]:
    """Mark these waiting (or re-delivered running) jobs running and count an attempt each.

    Returns the jobs claimed; a job that is not waiting (finished, cancelled, unknown) is left
    out. A `running` job is re-delivered when its worker died mid-attempt; with
    `lost_attempts_allowed` that is accepted only while its attempts stay below
    `max_tries + lost_attempts_allowed`, so a job that kills every worker cannot loop forever
    (`store.fail_lost_job` ends it).
    """
    if not keys:
        return []
    # In id order: two statements locking overlapping rows lock them in the same order.
    ordered = sorted(keys, key=lambda key: key.job_id)
    one_row = len(ordered) == 1
    columns: list[list[Any]] = [[key.tenant_id for key in ordered], [key.job_id for key in ordered]]
    rows = await fetch(
        engine,
        _CLAIM_SQL[one_row],
        *row_parameters(columns, one_row=one_row),
        lost_attempts_allowed,
    )
    return [ClaimedJob(*row) for row in rows]


async def record_successes(engine: AsyncEngine, successes: Sequence[Success]) -> set[JobKey]:
    """Record these running jobs as succeeded; returns those moved (a job no longer running,
    e.g. cancelled meanwhile, keeps its status)."""
    if not successes:
        return set()
    ordered = sorted(successes, key=lambda success: success.key.job_id)
    columns: list[list[Any]] = [
        [success.key.tenant_id for success in ordered],
        [success.key.job_id for success in ordered],
        [json.dumps(success.result) for success in ordered],
        [success.expires_at for success in ordered],
        [new_id() for _ in ordered],
    ]
    one_row = len(ordered) == 1
    rows = await fetch(engine, _SUCCESS_SQL[one_row], *row_parameters(columns, one_row=one_row))
    return {JobKey(row["tenant_id"], row["id"]) for row in rows}
