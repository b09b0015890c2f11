"""The bench's smoke run: tiny sizes, Celery left out, targets not judged; every row printed.

It runs `python -m bench --quick` as a child process against the test servers (its own
database next to the test one, this worker's Redis db), so the bench cannot rot unnoticed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bench.report import ROWS

pytestmark = pytest.mark.bench

REPO_ROOT = Path(__file__).resolve().parents[2]
VERDICTS = {"met", "missed", "info"}
FLOW_TYPES = ("bench_flow_plain", "bench_flow_deadline", "bench_flow_keyed", "bench_flow_rated")
"""`bench.contracts.FLOW_TYPES`, by name: importing that module here would register the bench's
job types in this process, where the in-process test workers have no implementation for them."""


def _run_quick_bench(
    server_url: str,
    database_name: str,
    redis_url: str,
    module: tuple[str, ...] = ("bench", "--quick", "--skip-celery"),
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "JOBGATE_BENCH_DATABASE_URL": server_url,
        "JOBGATE_BENCH_REDIS_URL": redis_url,
    }
    argv = [sys.executable, "-m", *module]
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [*argv, f"--database-name={database_name}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its servers and workers can be stopped with it
    )
    try:
        stdout, stderr = process.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)
        raise
    return process.returncode, stdout, stderr


@pytest.mark.timeout(120)
def test_quick_run_prints_every_row(
    server_urls: tuple[str, str], database_url: str, redis_url: str
) -> None:
    database_name = f"{make_url(database_url).database}_bench"
    code, stdout, stderr = _run_quick_bench(server_urls[0], database_name, redis_url)

    assert code == 0, stderr[-4000:]
    lines = {line.split("|")[1].strip(): line for line in stdout.splitlines() if "|" in line}
    for row in ROWS:
        assert row.measure in lines, f"missing row {row.measure!r}:\n{stdout}"
        verdict = lines[row.measure].split("|")[-2].strip()
        if "Celery" in row.measure:
            assert verdict == "skipped (--skip-celery)", lines[row.measure]
        else:
            assert verdict in VERDICTS, lines[row.measure]
    assert "judged targets met" in stdout


@pytest.mark.timeout(120)
def test_flow_controls_quick_run_prints_a_row_per_control(
    server_urls: tuple[str, str], database_url: str, redis_url: str
) -> None:
    database_name = f"{make_url(database_url).database}_flow"
    argv = ("bench.flow_controls", "--quick")
    code, stdout, stderr = _run_quick_bench(server_urls[0], database_name, redis_url, argv)

    assert code == 0, stderr[-4000:]
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith("| bench_flow_")]
    assert tuple(row[1].strip() for row in rows) == FLOW_TYPES
    for row in rows:
        figures = [cell.strip().split(" ")[0].replace(",", "") for cell in row[3:10]]
        assert all(float(figure) > 0 for figure in figures), row  # every path measured
    assert rows[0][4].strip() == "1.00" and rows[0][9].strip() == "1.00"  # the baseline
    assert "Load average (1 min) at each round's start" in stdout
