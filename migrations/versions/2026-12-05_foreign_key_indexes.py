"""Foreign key indexes: deleting a job, workflow or tenant no longer scans a table per row.

PostgreSQL finds the rows that reference a deleted row with `WHERE fk = $1` on the
referencing table. `job.retry_of`, `job.workflow_id` and `webhook_delivery.tenant_id` had no
index for it, so the retention purge scanned `job` once per deleted job: 9 rows a second on a
million jobs.

The indexes are built `CONCURRENTLY`, outside the migration's transaction: on a large `job`
table a plain `CREATE INDEX` would hold off every insert and update (submits, claims,
outcomes) for as long as the build takes. The price: each build waits for the transactions
already running on its table, and a build that fails leaves an invalid index behind, which
the next run drops and builds again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.index_builds import drop_if_invalid

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, column, predicate): partial where most rows leave the column null.
INDEXES: tuple[tuple[str, str, str, str | None], ...] = (
    ("ix_job_retry_of", "job", "retry_of", "retry_of IS NOT NULL"),
    ("ix_job_workflow_id", "job", "workflow_id", "workflow_id IS NOT NULL"),
    ("ix_webhook_delivery_tenant_id", "webhook_delivery", "tenant_id", None),
)


def upgrade() -> None:
    # CONCURRENTLY cannot run inside a transaction block.
    with op.get_context().autocommit_block():
        for name, table, column, predicate in INDEXES:
            drop_if_invalid(name)
            op.create_index(
                name,
                table,
                [column],
                postgresql_where=sa.text(predicate) if predicate else None,
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _column, _predicate in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
