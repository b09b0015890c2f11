"""Lifecycle: cancel requests for running jobs, the system tenant that owns cron runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job", sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("job", "cancel_requested_at")
