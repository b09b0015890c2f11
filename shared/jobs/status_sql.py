"""The SQL behind `status_changes`: the one guarded-UPDATE statement every single-job change
is built from, and the worker's two batch statements (claim, success) as raw SQL text.

Kept apart from `status_changes` so that module reads as the list of named changes; nothing
else but its tests imports this.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Table,
    bindparam,
    literal_column,
    select,
    update,
)
from sqlalchemy.orm import aliased

from shared.jobs import attempt_sql
from shared.jobs.deadline_sql import EXPIRED_ERROR, NEW_ID, OVERDUE, if_overdue, retention
from shared.jobs.raw_sql import row_source
from shared.jobs.rows import CLAIMED_COLUMNS
from shared.models import Job, WebhookDelivery
from shared.status import ALLOWED_FROM, JobStatus
from shared.webhooks import deliveries


def transition_statement(
    to: JobStatus,
    *,
    from_: frozenset[JobStatus] | None = None,
    when: ColumnElement[bool] | None = None,
    records_attempt: bool | attempt_sql.AttemptRecord = False,
    **values: Any,
) -> Select[Job]:
    """The one statement that moves a job to `to` if its status (and `when`) allows it.

    Built once per kind of change (callers cache it): the job's `tenant_id` and `job_id`, and
    any `bindparam` in `when` or `values`, are bound at execution. A move to a terminal status
    also records the job's webhook delivery in the same statement (`WITH moved AS (UPDATE ...
    RETURNING ...) INSERT INTO webhook_delivery ... FROM moved`), so it stays atomic without a
    transaction of its own (the worker runs these in autocommit). With `records_attempt`, the
    worker's attempt is recorded in it too (`attempt_sql.attempt_of_moved`), its outcome the
    job's new status unless an `AttemptRecord` says otherwise.
    """
    allowed = ALLOWED_FROM[to] if from_ is None else from_
    table = cast(Table, Job.__table__)
    moved = (
        update(table)
        .where(
            table.c.tenant_id == bindparam("p_tenant_id"),
            table.c.id == bindparam("p_job_id"),
            table.c.status.in_([sql_constant(status.value) for status in sorted(allowed)]),
            *(() if when is None else (when,)),
        )
        .values(status=sql_constant(to.value), **values)
        .returning(*table.c)
        .cte("moved")
    )
    stmt = select(aliased(Job, moved))
    if to.is_terminal:
        stmt = stmt.add_cte(deliveries.deliveries_of_moved(moved))
    if records_attempt:
        record = (
            records_attempt
            if isinstance(records_attempt, attempt_sql.AttemptRecord)
            else attempt_sql.AttemptRecord(to)
        )
        stmt = stmt.add_cte(attempt_sql.attempt_of_moved(moved, record))
    return stmt.execution_options(populate_existing=True)


def bound(name: str) -> BindParameter[Any]:
    # Not a column's name: SQLAlchemy would take a parameter named like a column as a SET value.
    return bindparam(f"p_{name}")


def sql_constant(value: str) -> ColumnElement[Any]:
    """One of our own status names written into the SQL: a cached statement holds no anonymous
    parameter (SQLAlchemy's cache could not fill those in inside a DML CTE)."""
    return literal_column(f"'{value}'")


_JOB = Job.__tablename__
_DELIVERY = WebhookDelivery.__tablename__


def _statuses(target: JobStatus) -> str:
    # Our own enum's values, not input: safe to write into the SQL text.
    return ", ".join(f"'{status.value}'" for status in sorted(ALLOWED_FROM[target]))


# Column names checked against the table at import: a typo fails here, not in SQL.
_RETURNED = ", ".join(f"job.{Job.__table__.c[name].name}" for name in CLAIMED_COLUMNS)


# The f-strings splice in only table names, column names and our own status values; every
# value travels as a bound parameter (hence `noqa: S608`).
#
# The claim commits asynchronously (`synchronous_commit` off for its own transaction only):
# the job starts without waiting for the WAL flush. What that risks: a PostgreSQL crash (or
# failover) in the fraction of a second before the WAL writer, or any later synchronous
# commit, flushes it forgets the claim; the row is `queued` again, its worker's outcome then
# matches nothing, and the job runs again from the queue with that start uncounted: at least
# once, no job lost. Every other write (submit, outcomes, cancel) stays synchronous.
#
# A job past its start deadline is not started but ends `expired` in the same UPDATE (its
# webhook owed with it, `owed`): a claim and the deadline sweep both lock the row, so exactly
# one of them ends it, and a job whose deadline passed never runs however it is picked up.
# $4, $5: the retention of the jobs that expire.
def _claim_sql(one_row: bool) -> str:
    taken = row_source(["uuid", "uuid"], first=1, one_row=one_row)
    # One job: its key as parameters too. With the UPDATE inside a CTE, `taken` is scanned as a
    # CTE, and on a table never analysed the generic plan then reads every row of `job`.
    by_key = "AND job.tenant_id = $1::uuid AND job.id = $2::uuid" if one_row else ""
    return f"""
WITH taken AS (
    SELECT * FROM {taken} AS taken (tenant_id, id)
    WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL
), claimed AS (
    UPDATE {_JOB} AS job
    SET status = {if_overdue(f"'{JobStatus.EXPIRED.value}'", f"'{JobStatus.RUNNING.value}'")},
        attempts = job.attempts + {if_overdue("0", "1")},
        started_at = {if_overdue("job.started_at", "now()")},
        progress = {if_overdue("job.progress", "NULL")},
        error = {if_overdue(EXPIRED_ERROR, "job.error")},
        finished_at = {if_overdue("now()", "job.finished_at")},
        expires_at = {if_overdue(retention("$4", "$5"), "job.expires_at")}
    FROM taken
    WHERE job.tenant_id = taken.tenant_id AND job.id = taken.id {by_key}
      AND job.status IN ({_statuses(JobStatus.RUNNING)})
      AND (job.status <> '{JobStatus.RUNNING.value}' OR $3::integer IS NULL
           OR job.attempts < job.max_tries + $3::integer OR {OVERDUE})
    RETURNING {_RETURNED}, job.webhook_url
), owed AS (
    INSERT INTO {_DELIVERY} (id, tenant_id, job_id, url)
    SELECT {NEW_ID}, tenant_id, id, webhook_url FROM claimed
    WHERE status = '{JobStatus.EXPIRED.value}' AND webhook_url IS NOT NULL
)
SELECT {", ".join(CLAIMED_COLUMNS)} FROM claimed
"""  # noqa: S608


CLAIM_SQL = {one_row: _claim_sql(one_row) for one_row in (True, False)}


def _success_sql(one_row: bool) -> str:
    types = ["uuid", "uuid", "jsonb", "timestamptz", "uuid", "integer", "timestamptz", "text"]
    done = row_source(types, first=1, one_row=one_row)
    return f"""
WITH done AS (
    SELECT * FROM {done}
    AS done (tenant_id, id, result, expires_at, delivery_id, number, started_at, worker)
), moved AS (
    UPDATE {_JOB} AS job
    SET status = '{JobStatus.SUCCEEDED.value}', result = done.result, error = NULL,
        finished_at = now(), expires_at = done.expires_at
    FROM done
    WHERE job.tenant_id = done.tenant_id AND job.id = done.id
      AND job.status IN ({_statuses(JobStatus.SUCCEEDED)})
    RETURNING job.tenant_id, job.id, job.webhook_url, done.delivery_id,
        done.number, done.started_at, done.worker
), owed AS (
    INSERT INTO {_DELIVERY} (id, tenant_id, job_id, url)
    SELECT delivery_id, tenant_id, id, webhook_url FROM moved WHERE webhook_url IS NOT NULL
), ran AS ({attempt_sql.successes_of_moved_sql("moved")}
)
SELECT tenant_id, id FROM moved
"""  # noqa: S608


SUCCESS_SQL = {one_row: _success_sql(one_row) for one_row in (True, False)}
