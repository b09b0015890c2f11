"""Workflows: chains, groups and chords of jobs; each step runs as a job of its workflow.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_workflow_status"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_workflow_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow")),
    )
    op.create_index(op.f("ix_workflow_tenant_id_id"), "workflow", ["tenant_id", "id"])
    op.create_index(
        "ix_workflow_running", "workflow", ["id"], postgresql_where=sa.text("status = 'running'")
    )
    op.add_column("job", sa.Column("workflow_id", sa.UUID(), nullable=True))
    op.add_column("job", sa.Column("workflow_step", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_job_workflow_id_workflow"),
        "job",
        "workflow",
        ["workflow_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_job_workflow_step",
        "job",
        ["workflow_id", "workflow_step"],
        unique=True,
        postgresql_where=sa.text("workflow_id IS NOT NULL AND retried_by IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_job_workflow_step", table_name="job")
    op.drop_constraint(op.f("fk_job_workflow_id_workflow"), "job", type_="foreignkey")
    op.drop_column("job", "workflow_step")
    op.drop_column("job", "workflow_id")
    op.drop_index("ix_workflow_running", table_name="workflow")
    op.drop_index(op.f("ix_workflow_tenant_id_id"), table_name="workflow")
    op.drop_table("workflow")
