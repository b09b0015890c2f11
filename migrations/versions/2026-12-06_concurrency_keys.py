"""Concurrency keys: the key each job counts under, and why a running job was asked to stop.

`concurrency_key` is set at submit for job types with a `ConcurrencyLimit`; a submit under a
cancelling strategy counts the unfinished jobs of its key through `ix_job_concurrency_key`,
partial so that finished and unkeyed jobs (nearly all rows) stay out of it. `cancel_reason`
carries what jobgate said when it asked a running job to stop (a newer job with the same key),
into the job's `cancelled` error.

Adding nullable columns without a default rewrites nothing. The index is built
`CONCURRENTLY`, outside the migration's transaction, as in 0008: a plain build would hold off
every submit and status change for as long as it takes on a large `job` table.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.concurrent_indexes import create_index_concurrently

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_job_concurrency_key"
# Frozen here, as written when this ran: the model's predicate is built from the statuses.
PREDICATE = (
    "concurrency_key IS NOT NULL AND status IN ('queued', 'retrying', 'running', 'scheduled')"
)


def upgrade() -> None:
    op.add_column("job", sa.Column("concurrency_key", sa.Text(), nullable=True))
    op.add_column("job", sa.Column("cancel_reason", sa.Text(), nullable=True))
    # CONCURRENTLY cannot run inside a transaction block.
    with op.get_context().autocommit_block():
        create_index_concurrently(
            INDEX, "job", ["tenant_id", "name", "concurrency_key", "id"], where=PREDICATE
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name="job", postgresql_concurrently=True, if_exists=True)
    op.drop_column("job", "cancel_reason")
    op.drop_column("job", "concurrency_key")
