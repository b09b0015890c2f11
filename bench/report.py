"""The one table: measure, jobgate figure, baseline figure, ratio, target, met or missed."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from bench.results import Figure, Results


class Goal(StrEnum):
    """How a row's target is judged."""

    MIN_RATIO = "min_ratio"
    MAX_RATIO = "max_ratio"
    RATIO_BAND = "ratio_band"
    MAX_VALUE = "max_value"
    INFO = "info"


@dataclass(frozen=True)
class Target:
    """What a row must reach: a ratio to its baseline, or an absolute bound on jobgate's figure."""

    goal: Goal
    low: float = math.nan
    high: float = math.nan

    def text(self, unit: str) -> str:
        """The target as printed."""
        match self.goal:
            case Goal.MIN_RATIO:
                return f"ratio ≥ {self.low:g}"
            case Goal.MAX_RATIO:
                return f"ratio ≤ {self.high:g}"
            case Goal.RATIO_BAND:
                return f"ratio {self.low:g} to {self.high:g}"
            case Goal.MAX_VALUE:
                return f"≤ {self.high:g} {unit}"
        return "—"

    def is_met(self, value: float, ratio: float | None) -> bool | None:
        """Whether the figures reach the target; None when the row only informs."""
        match self.goal:
            case Goal.MIN_RATIO:
                return ratio is not None and ratio >= self.low
            case Goal.MAX_RATIO:
                return ratio is not None and ratio <= self.high
            case Goal.RATIO_BAND:
                return ratio is not None and self.low <= ratio <= self.high
            case Goal.MAX_VALUE:
                return value <= self.high
        return None


INFO = Target(Goal.INFO)


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    measure: str
    unit: str
    jobgate: Figure
    baseline: Figure | None
    baseline_label: str
    target: Target


ROWS: tuple[Row, ...] = (
    Row("Submit throughput, POST /jobs/echo", "req/s", Figure.SUBMIT_RPS, Figure.BARE_RPS,
        "bare endpoint", Target(Goal.MIN_RATIO, low=0.8)),
    Row("Submit latency p99", "ms", Figure.SUBMIT_P99_MS, Figure.BARE_P99_MS,
        "bare endpoint", Target(Goal.MAX_RATIO, high=1.5)),
    Row("Submit latency p50", "ms", Figure.SUBMIT_P50_MS, Figure.BARE_P50_MS,
        "bare endpoint", INFO),
    Row("Batch submit, 100 per request", "jobs/s", Figure.BATCH_JOBS_S, Figure.SUBMIT_RPS,
        "single submit", Target(Goal.MIN_RATIO, low=10)),
    Row("End-to-end drain (batch submit → succeeded)", "jobs/s", Figure.DRAIN_JOBS_S,
        Figure.ARQ_DRAIN_TUNED_JOBS_S, "raw ARQ tuned", Target(Goal.MIN_RATIO, low=0.7)),
    Row("End-to-end drain vs raw ARQ, same max_jobs", "jobs/s", Figure.DRAIN_JOBS_S,
        Figure.ARQ_DRAIN_SAME_JOBS_S, "raw ARQ, same max_jobs", INFO),
    Row("End-to-end drain, 2 worker processes, vs Celery", "jobs/s", Figure.DRAIN_2PROC_JOBS_S,
        Figure.CELERY_DRAIN_JOBS_S, "Celery prefork, 2 procs", Target(Goal.MIN_RATIO, low=1.5)),
    Row("Pickup latency p50, idle worker", "ms", Figure.PICKUP_P50_MS,
        Figure.ARQ_PICKUP_DEFAULT_P50_MS, "raw ARQ defaults", Target(Goal.MAX_VALUE, high=5)),
    Row("Pickup latency p99, idle worker", "ms", Figure.PICKUP_P99_MS,
        Figure.ARQ_PICKUP_DEFAULT_P99_MS, "raw ARQ defaults", Target(Goal.MAX_VALUE, high=20)),
    Row("Pickup latency p50 vs raw ARQ tuned", "ms", Figure.PICKUP_P50_MS,
        Figure.ARQ_PICKUP_TUNED_P50_MS, "raw ARQ tuned", INFO),
    Row("Pickup latency p50 vs Celery", "ms", Figure.PICKUP_P50_MS, Figure.CELERY_PICKUP_P50_MS,
        "Celery", INFO),
    Row("Long-poll notification delay p50", "ms", Figure.LONGPOLL_P50_MS, None, "",
        Target(Goal.MAX_VALUE, high=20)),
    Row("Enqueue rate vs raw ARQ enqueue_job", "jobs/s", Figure.SUBMIT_RPS,
        Figure.ARQ_ENQUEUE_JOBS_S, "ARQ, one process", INFO),
    Row("Enqueue rate vs Celery delay()", "jobs/s", Figure.SUBMIT_RPS,
        Figure.CELERY_ENQUEUE_JOBS_S, "Celery, one process", INFO),
    Row("Scaling: submit cost per job, large vs small table", "ms/job",
        Figure.SCALE_LARGE_COST_MS, Figure.SCALE_SMALL_COST_MS, "small table",
        Target(Goal.RATIO_BAND, low=0.8, high=1.2)),
    Row("Scaling: GET /jobs p50, large table", "ms", Figure.LIST_P50_MS, None, "",
        Target(Goal.MAX_VALUE, high=10)),
    Row("Gateway RSS after drain", "MB", Figure.GATEWAY_RSS_MB, Figure.BARE_RSS_MB,
        "bare endpoint", Target(Goal.MAX_VALUE, high=150)),
    Row("Worker RSS after drain", "MB", Figure.WORKER_RSS_MB, Figure.ARQ_WORKER_RSS_MB,
        "raw ARQ worker", Target(Goal.MAX_VALUE, high=150)),
)  # fmt: skip

HEADER = ("Measure", "jobgate", "Baseline", "Ratio", "Target", "Result")


def _number(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    digits = 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f} {unit}"


def _cells(row: Row, results: Results) -> tuple[str, ...]:
    value = results.values.get(row.jobgate)
    base = results.values.get(row.baseline) if row.baseline else None
    jobgate_cell = "—" if value is None else _number(value, row.unit)
    base_cell = "—" if base is None else f"{_number(base, row.unit)} ({row.baseline_label})"
    ratio = value / base if value is not None and base else None
    ratio_cell = "—" if ratio is None else f"{ratio:.2f}x"
    return (
        row.measure,
        jobgate_cell,
        base_cell,
        ratio_cell,
        row.target.text(row.unit),
        _verdict(row, results, value, ratio),
    )


def _verdict(row: Row, results: Results, value: float | None, ratio: float | None) -> str:
    for figure in (row.jobgate, row.baseline):
        if figure is None:
            continue
        if figure not in results.values:
            return results.missing.get(figure, "error (not measured)")
    if value is None:
        return "error (not measured)"
    met = row.target.is_met(value, ratio)
    if met is None:
        return "info"
    return "met" if met else "missed"


def verdicts(results: Results) -> list[str]:
    """Each row's result column, in table order."""
    return [_cells(row, results)[-1] for row in ROWS]


def render_table(results: Results) -> str:
    """The results as a Markdown table (readable in a terminal too)."""
    lines = [_cells(row, results) for row in ROWS]
    widths = [max(len(line[i]) for line in [HEADER, *lines]) for i in range(len(HEADER))]

    def render(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    table = [render(HEADER), separator, *(render(line) for line in lines)]
    verdicts = [line[-1] for line in lines]
    judged = [v for v in verdicts if v in {"met", "missed"}]
    summary = f"{verdicts.count('met')} of {len(judged)} judged targets met"
    return "\n".join([*table, "", summary, *(f"- {note}" for note in results.notes)])


def machine_description() -> str:
    """nproc, CPU model, Python, date: what the figures were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    return "\n".join(
        [
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- CPUs (nproc): {os.cpu_count()}; model: {cpu}",
            f"- Memory: {memory_kb / 1024 / 1024:.1f} GiB",
            f"- Python {platform.python_version()} on {platform.platform()}",
            f"- Load average (1, 5, 15 min) as the table was written: {_load_average()}",
        ]
    )


def _load_average() -> str:
    # Other engineers' test runs share this machine; this says how busy it was.
    return ", ".join(Path("/proc/loadavg").read_text().split()[:3])


def write_results(path: Path, table: str, *, command: str, sizes: str) -> None:
    """Write the table and the machine it ran on to `path` (bench/RESULTS.md)."""
    path.write_text(
        "# Benchmark results\n\n"
        "Figures from one run of the command below; baselines are measured in the same run on "
        "the same machine. Absolute numbers are noisy (other work shares this machine); the "
        "ratios are what the targets judge. How each figure is measured: "
        "[bench/README.md](README.md).\n\n"
        f"Command: `{command}`\n\nSizes: {sizes}\n\n## Machine\n\n{machine_description()}\n\n"
        f"## Table\n\n{table}\n"
    )


TABLE_START = "<!-- bench table: start -->"
TABLE_END = "<!-- bench table: end -->"
DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def update_table_copy(page: Path, table: str, *, when: str) -> bool:
    """Put the table between the page's bench markers; False if it has none.

    docs/benchmarks.md shows the latest table without a second copy to keep in step by hand:
    the run that writes RESULTS.md writes it there too.
    """
    text = page.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        return False
    block = f"{TABLE_START}\nLatest full run ({when}, details in `bench/RESULTS.md`):\n\n{table}\n"
    page.write_text(text[:start] + block + text[end:])
    return True
