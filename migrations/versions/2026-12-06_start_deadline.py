"""Start deadlines: `job.start_by`, the status `expired`, and the index the deadline sweep reads.

Safe on a large `job` table, without a rewrite or a long lock:

- the new column is nullable with no default: a change to the catalogue only;
- the status check is replaced by a wider one added `NOT VALID` (no scan under the table's
  lock), then validated in a transaction of its own, which reads the table while writes go on
  (`VALIDATE CONSTRAINT` takes a lock that lets them through);
- the sweep's index is built `CONCURRENTLY` (`migrations.concurrent_indexes`).

The catalogue changes take the table's lock for a moment; `lock_timeout` makes them give up
after a few seconds rather than queue every other query behind a long transaction on `job`
(run the migration again then).

Downgrading ends `expired` jobs as `failed` (their error keeps the type `expired`): the old
status check does not know `expired`.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.concurrent_indexes import create_index_concurrently

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'scheduled', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'"
_WAITING = "'queued', 'retrying', 'scheduled'"
_INDEX = "ix_job_start_by"
_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"


def _replace_status_check(statuses: str) -> None:
    """Swap `ck_job_status` for one allowing `statuses`, validated without blocking writes."""
    op.execute(_LOCK_TIMEOUT)
    op.execute(
        "ALTER TABLE job DROP CONSTRAINT ck_job_status,"
        f" ADD CONSTRAINT ck_job_status CHECK (status IN ({statuses})) NOT VALID"
    )
    with op.get_context().autocommit_block():
        op.execute("ALTER TABLE job VALIDATE CONSTRAINT ck_job_status")


def upgrade() -> None:
    op.execute(_LOCK_TIMEOUT)
    op.add_column("job", sa.Column("start_by", sa.DateTime(timezone=True), nullable=True))
    _replace_status_check(f"{_STATUSES}, 'expired'")
    with op.get_context().autocommit_block():
        create_index_concurrently(
            _INDEX,
            "job",
            ["start_by"],
            where=f"start_by IS NOT NULL AND status IN ({_WAITING})",
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(_INDEX, table_name="job", postgresql_concurrently=True, if_exists=True)
    op.execute("UPDATE job SET status = 'failed' WHERE status = 'expired'")
    _replace_status_check(_STATUSES)
    op.drop_column("job", "start_by")
