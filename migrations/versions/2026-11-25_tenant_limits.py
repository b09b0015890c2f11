"""Tenant limits: a submit rate limit (token bucket) and a concurrency quota per tenant.

Null in any column means "the configured default" (`JOBGATE_RATE_LIMIT_*`,
`JOBGATE_TENANT_MAX_CONCURRENT_JOBS`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenant", sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
    op.add_column("tenant", sa.Column("rate_limit_burst", sa.Integer(), nullable=True))
    op.add_column("tenant", sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_tenant_limits"),
        "tenant",
        "rate_limit_per_second > 0 AND rate_limit_burst >= 1 AND max_concurrent_jobs >= 1",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_tenant_limits"), "tenant", type_="check")
    op.drop_column("tenant", "max_concurrent_jobs")
    op.drop_column("tenant", "rate_limit_burst")
    op.drop_column("tenant", "rate_limit_per_second")
