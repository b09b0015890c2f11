"""Rows of values passed to one statement: plain parameters for one row, arrays for several.

The hot statements (a submit's insert, the worker's claim and success) take one row per job.
For several, one array per column (`unnest($1::uuid[], ...)`) keeps one statement text for
any number of rows, so asyncpg prepares it once. For the single row of an idle system's job
that form costs twice: encoding and unnesting arrays of one, and a plan made for ten rows of
unknown values, which on a small job table (a new deployment, the bench) joins by scanning
the whole table instead of looking the row up by its key (0.4 ms of a claim on the bench's
VM, against 0.8 ms for the whole statement). One row gets plain parameters and a plan made
for one row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def row_source(types: Sequence[str], *, first: int, one_row: bool) -> str:
    """A FROM item of the rows in parameters `$first`, `$first + 1`, ... (one per column).

    Give it a column alias list: `{row_source(...)} AS taken (tenant_id, id)`. The types are
    SQL type names, written into the text: pass only names of our own.
    """
    parameters = [f"${number}::{name}" for number, name in enumerate(types, start=first)]
    if one_row:
        return f"(SELECT {', '.join(parameters)})"
    return f"unnest({', '.join(f'{parameter}[]' for parameter in parameters)})"


def row_parameters(columns: Sequence[list[Any]], *, one_row: bool) -> list[Any]:
    """The parameters for `row_source` (given the same `one_row`): each column's list of
    values, or for one row each column's value."""
    if one_row:
        return [column[0] for column in columns]
    return list(columns)
