"""What the migrations that build indexes `CONCURRENTLY` (on a live table) share."""

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
