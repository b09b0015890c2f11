"""How an attempt is recorded: in the statement that records its outcome, never on its own.

The worker's outcome statements (`status_changes`: a success, a retry, a failure, a cancel)
each carry one more CTE that inserts the attempt's row for the job the statement moved (none
if it moved none). So recording the history costs no round trip, and it cannot be half-stored:
an outcome the job's status refuses (the job was cancelled or finished meanwhile) records no
attempt either, and an attempt is never recorded without its outcome.

What the worker alone knows about the attempt (`RanAttempt`: its number and start, as its
claim returned them, and its own name) travels as parameters; the job row may have moved on
since (a lease that lapsed, a re-delivery) and would tell another attempt's story.

One attempt number can meet two outcomes only in a corner: a worker cut off from Redis (not
dead) records late, after its lease lapsed and another worker took the job, and a hand-back in
between made the two claims share a number. The first row then stays (`ON CONFLICT DO
NOTHING`): the history must never make an outcome fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import CTE, DateTime, Integer, Text, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert

from shared.models import JobAttempt
from shared.status import JobStatus

if TYPE_CHECKING:
    from shared.jobs.rows import ClaimedJob

_ATTEMPT = JobAttempt.__tablename__
RECORDED_COLUMNS = (
    "job_id",
    "number",
    "worker",
    "started_at",
    "finished_at",
    "outcome",
    "error_type",
    "error_message",
)
"""`job_attempt`'s columns in the order the statements below fill them."""


@dataclass(frozen=True, slots=True)
class RanAttempt:
    """An attempt as its worker ran it: recorded with the attempt's outcome."""

    number: int
    started_at: datetime
    worker: str
    """The worker process, `host:pid` (`worker.settings.worker_name`)."""

    @classmethod
    def of(cls, job: ClaimedJob, worker: str) -> RanAttempt:
        """The attempt a claim started (the claim returned its number and start)."""
        # Every claim sets `started_at`; the column is nullable only for jobs never started.
        return cls(job.attempts, job.started_at or datetime.now(UTC), worker)

    def parameters(self) -> dict[str, Any]:
        """The values `attempt_of_moved`'s parameters take (without their `p_` prefix)."""
        return {
            "attempt_number": self.number,
            "attempt_started_at": self.started_at,
            "attempt_worker": self.worker,
        }


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How a statement that moves a job records the attempt, when the attempt's outcome is not
    the job's new status: a failed attempt whose retry would start after the job's start
    deadline moves the job to `expired`, yet the attempt itself `failed`, with its own error
    (bound as `p_attempt_error_type`, `p_attempt_error_message`), not the job's new one."""

    outcome: JobStatus
    own_error: bool = False


def attempt_of_moved(moved: CTE, record: AttemptRecord) -> CTE:
    """The attempt's row, inserted by a `status_sql.transition_statement` that moved the job.

    `moved` is that statement's `UPDATE ... RETURNING` CTE: one row if it moved the job, none
    otherwise. The error is the one the statement just wrote on the job, unless the record
    brings the attempt's own.
    """
    error_type, error_message = (
        (
            bindparam("p_attempt_error_type", type_=Text()),
            bindparam("p_attempt_error_message", type_=Text()),
        )
        if record.own_error
        else (moved.c.error["type"].astext, moved.c.error["message"].astext)
    )
    ran = select(
        moved.c.id,
        bindparam("p_attempt_number", type_=Integer()),
        bindparam("p_attempt_worker", type_=Text()),
        bindparam("p_attempt_started_at", type_=DateTime(timezone=True)),
        func.now(),
        # Our own status name, not input; a literal keeps the cached statement parameter-free.
        literal_column(f"'{record.outcome.value}'"),
        error_type,
        error_message,
    )
    return (
        insert(JobAttempt)
        .from_select(list(RECORDED_COLUMNS), ran)
        .on_conflict_do_nothing(index_elements=["job_id", "number"])
        .cte("recorded_attempt")
    )


def successes_of_moved_sql(moved: str) -> str:
    """`attempt_of_moved` for the batched success statement (`status_sql.SUCCESS_SQL`): the
    body of an `INSERT` CTE reading the CTE `moved`, which returns each job's `id` with its
    attempt's `number`, `started_at` and `worker`."""
    return f"""
    INSERT INTO {_ATTEMPT} ({", ".join(RECORDED_COLUMNS)})
    SELECT id, number, worker, started_at, now(), '{JobStatus.SUCCEEDED.value}', NULL, NULL
    FROM {moved}
    ON CONFLICT (job_id, number) DO NOTHING"""  # noqa: S608 (our own names and status)
