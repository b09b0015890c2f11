"""The SQL of start deadlines: what makes a job overdue, what an expiry writes, the sweep.

Raw SQL text, as the claim (`status_sql.CLAIM_SQL`) is: the claim splices in the fragments
below, and the sweep is one statement of the same kind. Nothing but `status_sql`,
`shared.jobs.deadlines` and their tests imports this.
"""

from __future__ import annotations

import json
from typing import Any

from shared.jobs.rows import CLAIMED_COLUMNS
from shared.models import Job, WebhookDelivery
from shared.status import WAITING, JobStatus

EXPIRED_TYPE = JobStatus.EXPIRED.value
"""The `error.type` of every expired job."""
NOT_STARTED: dict[str, Any] = {
    "type": EXPIRED_TYPE,
    "message": "not started by its start deadline (start_by)",
}
NEXT_TRY_NOT_STARTED: dict[str, Any] = {
    "type": EXPIRED_TYPE,
    "message": "its next try was not started by its start deadline (start_by)",
}
LOST_PAST_DEADLINE: dict[str, Any] = {
    "type": EXPIRED_TYPE,
    "message": "its worker stopped mid-attempt, and its start deadline (start_by) passed"
    " before it could start again",
}

OVERDUE = "job.start_by < now()"
"""A job (aliased `job`) past its start deadline; false, not null-true, when it has none."""


def _jsonb(value: dict[str, Any]) -> str:
    # Our own constants: quoted as a literal, so the statement text stays fixed.
    return "'" + json.dumps(value).replace("'", "''") + "'::jsonb"


EXPIRED_ERROR = (
    f"CASE WHEN job.status = '{JobStatus.RUNNING.value}' THEN {_jsonb(LOST_PAST_DEADLINE)}"
    f" WHEN job.attempts > 0 THEN {_jsonb(NEXT_TRY_NOT_STARTED)}"
    f" ELSE {_jsonb(NOT_STARTED)} END"
)
"""The error an expiry writes (of a job aliased `job`, its values before the change): a
re-delivered `running` job lost its worker first; a waiting one that ran before waited for a
retry (or was handed back after an outage)."""


def retention(by_type: str, default: str) -> str:
    """`expires_at` of a job ending now: parameters `by_type` (a jsonb object of seconds by
    job type, `Retention.by_type_json`) and `default` (`Retention.default_seconds`)."""
    return (
        f"now() + make_interval(secs => coalesce(({by_type}::jsonb ->> job.name)::float8,"
        f" {default}::float8))"
    )


NEW_ID = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing"
    " substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)"
    " FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)
"""A UUIDv7 made in SQL (`shared.ids.new_id`'s kind: the time in ms, then random bits, the
version set to 7), for the webhook delivery of a job that expires: evaluated only for those,
so a claim that expires nothing costs no id."""


def if_overdue(expired: str, otherwise: str) -> str:
    """A column's value at a claim: `expired` for a job past its deadline, else `otherwise`."""
    return f"CASE WHEN {OVERDUE} THEN {expired} ELSE {otherwise} END"


_JOB = Job.__tablename__
_DELIVERY = WebhookDelivery.__tablename__
_WAITING = ", ".join(f"'{status.value}'" for status in sorted(WAITING))
_RETURNED = ", ".join(f"job.{Job.__table__.c[name].name}" for name in CLAIMED_COLUMNS)

# Waiting jobs past their deadline, soonest deadline first, at most $1 (`ix_job_start_by`);
# SKIP LOCKED: rows a claim or another sweep holds are theirs (the claim expires them itself).
SWEEP_SQL = f"""
WITH overdue AS (
    SELECT tenant_id, id FROM {_JOB}
    WHERE status IN ({_WAITING}) AND start_by < now()
    ORDER BY start_by
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE {_JOB} AS job
    SET status = '{EXPIRED_TYPE}', error = {EXPIRED_ERROR}, finished_at = now(),
        expires_at = {retention("$2", "$3")}
    FROM overdue
    WHERE job.tenant_id = overdue.tenant_id AND job.id = overdue.id
      AND job.status IN ({_WAITING})
    RETURNING {_RETURNED}, job.webhook_url
), owed AS (
    INSERT INTO {_DELIVERY} (id, tenant_id, job_id, url)
    SELECT {NEW_ID}, tenant_id, id, webhook_url
    FROM moved WHERE webhook_url IS NOT NULL
)
SELECT {", ".join(CLAIMED_COLUMNS)} FROM moved
"""  # noqa: S608 (table, column and status names of our own; values are parameters)
