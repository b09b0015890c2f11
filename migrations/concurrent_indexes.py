"""Building indexes on a live table: `CREATE INDEX CONCURRENTLY`, safe to run again.

A plain `CREATE INDEX` on `job` would hold off every insert and update (submits, claims,
outcomes) for as long as the build takes. A concurrent build does not, but it cannot run in a
transaction (callers wrap it in `op.get_context().autocommit_block()`), waits for the
transactions already running on its table, and if it fails it leaves an invalid index behind,
which `drop_if_invalid` drops so that the next run builds it again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def drop_if_invalid(name: str) -> None:
    """An interrupted concurrent build leaves its index invalid; `IF NOT EXISTS` would keep it.

    A valid index of that name stays: an operator may have built it by hand already, and
    dropping it would bring the slow query back while it is rebuilt. (Offline `--sql` output
    cannot ask the database, so it leaves that check to whoever runs the script.)
    """
    if op.get_context().as_sql:
        return
    is_invalid = op.get_bind().scalar(
        sa.text(
            "SELECT NOT indisvalid FROM pg_index"
            " WHERE indexrelid = to_regclass(quote_ident(current_schema()) || '.' || :name)"
        ),
        {"name": name},
    )
    if is_invalid:
        op.drop_index(name, postgresql_concurrently=True)


def create_index_concurrently(
    name: str, table: str, columns: list[str], *, where: str | None = None
) -> None:
    """Build the index without blocking writes (inside an autocommit block); a no-op if a
    valid one exists."""
    drop_if_invalid(name)
    op.create_index(
        name,
        table,
        columns,
        postgresql_where=sa.text(where) if where else None,
        postgresql_concurrently=True,
        if_not_exists=True,
    )
