"""docs/benchmarks.md's copy of the latest bench table: only what is between its markers changes."""

from __future__ import annotations

from pathlib import Path

from bench.report import DOCS_PAGE, TABLE_END, TABLE_START, update_table_copy


def test_the_table_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(f"intro\n{TABLE_START}\nold table\n{TABLE_END}\noutro\n")
    assert update_table_copy(page, "| new | table |", when="2026-11-25 12:00 UTC")
    text = page.read_text()
    assert "old table" not in text
    assert text.startswith("intro\n") and text.endswith(f"{TABLE_END}\noutro\n")
    assert "| new | table |" in text and "2026-11-25 12:00 UTC" in text


def test_a_page_without_markers_is_left_alone(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("no markers here\n")
    assert not update_table_copy(page, "| t |", when="now")
    assert page.read_text() == "no markers here\n"


def test_the_benchmarks_page_has_the_markers_a_full_run_fills() -> None:
    text = DOCS_PAGE.read_text()
    assert text.find(TABLE_START) < text.find(TABLE_END), "docs/benchmarks.md lost its markers"
