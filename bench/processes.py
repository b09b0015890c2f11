"""Child processes of the bench: start on a free loopback port, wait until ready, measure, stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.http import Connection, encode_request
from cli.main import GATEWAY_SERVE_OPTIONS

REPO_ROOT = Path(__file__).resolve().parent.parent
RESERVED_PORTS = frozenset({8000})
"""Never bound by the bench (another engineer's dev gateway may be there)."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


@dataclass
class Child:
    """A running child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident set size now, in MiB (from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the child's output, for error messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def check_alive(self) -> None:
        """Raise if the child has exited."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with {code}:\n{self.log_tail()}")


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    port: int | None = None,
) -> Child:
    """Start `argv` from the repository root, output to `log_dir/<name>.log`."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        # Our own interpreter and modules, arguments as a list: no shell involved.
        process = subprocess.Popen(  # noqa: S603
            list(argv), cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    return Child(name=name, process=process, log_path=log_path, port=port)


async def stop(child: Child, timeout_seconds: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited in time."""
    if child.process.poll() is None:
        child.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(child.process.wait, timeout_seconds)
    except subprocess.TimeoutExpired:
        child.process.kill()
        child.process.wait()


@contextlib.asynccontextmanager
async def running(child: Child) -> AsyncIterator[Child]:
    """Stop the child when the block exits, however it exits."""
    try:
        yield child
    finally:
        await stop(child)


async def wait_http_ready(child: Child, path: str, timeout_seconds: float = 60.0) -> None:
    """Return once `GET path` answers 200 on the child's port."""
    assert child.port is not None  # noqa: S101 (only HTTP servers are waited on this way)
    raw = encode_request("GET", path, host=f"127.0.0.1:{child.port}", headers={})
    deadline = time.monotonic() + timeout_seconds
    last_error = ""
    while time.monotonic() < deadline:
        child.check_alive()
        connection = Connection("127.0.0.1", child.port)
        try:
            async with asyncio.timeout(2):
                response = await connection.request(raw)
            if response.status == 200:
                return
            last_error = f"status {response.status}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            last_error = type(exc).__name__
        finally:
            await connection.close()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready after {timeout_seconds} s ({last_error})")


def uvicorn_argv(app: str, port: int, *, http: str | None = None) -> list[str]:
    """How jobgate's gateway is run (`jobgate dev`): one process, uvloop, no access log, and
    the head-bounding httptools protocol `jobgate dev` and the image serve it with.

    The bare baseline is started with the same arguments but plain httptools (`http=`): the
    head guard is part of what jobgate's gateway costs.
    """
    serve = ("--http", http) if http is not None else GATEWAY_SERVE_OPTIONS
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--loop",
        "uvloop",
        *serve,
    ]
