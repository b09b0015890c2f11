"""`jobgate dev` on embedded servers: stopped by SIGTERM as by Ctrl-C, it stops them too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(150)
def test_sigterm_stops_the_embedded_servers_with_the_service(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JOBGATE_") and name != "XDG_RUNTIME_DIR"
    }
    env["JOBGATE_DATA_DIR"] = str(tmp_path / "data")
    with subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "cli", "dev", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # everything it starts can be stopped with it, if this fails
    ) as dev:
        try:
            _sigterm_stops_postgres(dev, tmp_path / "data")
        finally:
            # Whatever happened, nothing it started outlives the test (its session's group).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dev.pid, signal.SIGKILL)


def _sigterm_stops_postgres(dev: subprocess.Popen[str], data_dir: Path) -> None:
    assert dev.stdout is not None
    deadline = time.monotonic() + 120
    for line in dev.stdout:
        if "dev tenant API key" in line:
            break
        assert time.monotonic() < deadline, "jobgate dev never printed its key"
    postmaster = (data_dir / "postgres" / "postmaster.pid").read_text()
    postgres_pid = int(postmaster.splitlines()[0])
    assert _alive(postgres_pid)

    dev.send_signal(signal.SIGTERM)  # to the command alone, as a process manager sends it
    assert dev.wait(timeout=60) == 0

    deadline = time.monotonic() + 20
    while _alive(postgres_pid):
        assert time.monotonic() < deadline, "the embedded PostgreSQL outlived jobgate dev"
        time.sleep(0.1)
