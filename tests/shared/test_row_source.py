"""Rows of values for one statement: one row as plain parameters, several as arrays."""

from __future__ import annotations

from shared.jobs.raw_sql import row_parameters, row_source


def test_one_row_is_plain_parameters_typed_like_its_columns() -> None:
    assert row_source(["uuid", "jsonb"], first=3, one_row=True) == "(SELECT $3::uuid, $4::jsonb)"
    assert row_parameters([["a"], [{"k": 1}]], one_row=True) == ["a", {"k": 1}]


def test_several_rows_are_one_array_per_column() -> None:
    source = row_source(["uuid", "jsonb"], first=1, one_row=False)
    assert source == "unnest($1::uuid[], $2::jsonb[])"
    assert row_parameters([["a", "b"], [1, 2]], one_row=False) == [["a", "b"], [1, 2]]
