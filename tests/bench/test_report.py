"""The README's copy of the latest bench table is replaced between its markers, nothing else."""

from __future__ import annotations

from pathlib import Path

from bench.report import README_END, README_START, update_readme


def test_the_table_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\noutro\n")
    assert update_readme(readme, "| new | table |", when="2026-11-25 12:00 UTC")
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("intro\n") and text.endswith(f"{README_END}\noutro\n")
    assert "| new | table |" in text and "2026-11-25 12:00 UTC" in text


def test_a_readme_without_markers_is_left_alone(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert not update_readme(readme, "| t |", when="now")
    assert readme.read_text() == "no markers here\n"
