"""Job change notifications say the new status: `<job id>:<status>`.

A long-poll waits for a terminal status only; told which status a change brought, it skips
the re-read a `running` or progress notification used to cost it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _notify_function(payload: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION jobgate_notify_job_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('jobgate_job', {payload});
            RETURN NULL;
        END $$
        """


def upgrade() -> None:
    op.execute(_notify_function("NEW.id::text || ':' || NEW.status"))


def downgrade() -> None:
    op.execute(_notify_function("NEW.id::text"))
