"""Attempt history: one row per finished attempt of a job, deleted with the job.

A new table and nothing else: the job table is not touched (no rewrite, no new index on it).
The primary key (job_id, number) leads with the foreign key, so deleting a job (the retention
purge) finds its attempts by that index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_attempt",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('succeeded', 'retrying', 'failed', 'cancelled')",
            name=op.f("ck_job_attempt_outcome"),
        ),
        sa.CheckConstraint("number >= 1", name=op.f("ck_job_attempt_number")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["job.id"], name=op.f("fk_job_attempt_job_id_job"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "number", name=op.f("pk_job_attempt")),
    )


def downgrade() -> None:
    op.drop_table("job_attempt")
