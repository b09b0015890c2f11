"""The worker's liveness heartbeat (`worker.heartbeat`) and the probes that read it.

A running worker's heartbeat is exercised end to end in `tests/e2e/test_scale_out.py`; these
cases cover the ages the probe must tell apart, and the two probe commands.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from shared.settings import get_settings
from worker.heartbeat import STALE_AFTER_SECONDS, beat_forever, check


def age(path: Path, seconds: float) -> None:
    """Make the heartbeat look `seconds` old."""
    path.touch()
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_fresh_stale_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    missing = check(path)
    assert missing is not None and "not running" in missing
    age(path, 1)
    assert check(path) is None
    age(path, STALE_AFTER_SECONDS + 5)
    problem = check(path)
    assert problem is not None and "stuck" in problem


async def test_beats_while_running_and_clears_when_stopped(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    task = asyncio.create_task(beat_forever(path, interval_seconds=0.01))
    await asyncio.sleep(0.05)
    age(path, STALE_AFTER_SECONDS + 5)
    await asyncio.sleep(0.05)
    assert check(path) is None  # touched again since
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not path.exists()


def probe(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "worker.heartbeat", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_image_probe_exits_by_age(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert probe(path).returncode == 1
    age(path, 1)
    assert probe(path).returncode == 0
    age(path, STALE_AFTER_SECONDS + 5)
    stale = probe(path)
    assert stale.returncode == 1
    assert "stuck" in stale.stderr


@pytest.fixture
def heartbeat_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "heartbeat"
    monkeypatch.setenv("JOBGATE_WORKER_HEARTBEAT_FILE", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def test_jobgate_worker_health(heartbeat_env: Path) -> None:
    assert CliRunner().invoke(app, ["worker-health"]).exit_code == 1
    age(heartbeat_env, 1)
    alive = CliRunner().invoke(app, ["worker-health"])
    assert alive.exit_code == 0, alive.output
    assert "alive" in alive.output


def test_jobgate_worker_health_without_a_heartbeat_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBGATE_WORKER_HEARTBEAT_FILE", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker-health"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "JOBGATE_WORKER_HEARTBEAT_FILE" in result.output
