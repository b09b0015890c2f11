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


def _run_quick_bench(server_url: str, database_name: str, redis_url: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "JOBGATE_BENCH_DATABASE_URL": server_url,
        "JOBGATE_BENCH_REDIS_URL": redis_url,
    }
    argv = [sys.executable, "-m", "bench", "--quick", "--skip-celery"]
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
