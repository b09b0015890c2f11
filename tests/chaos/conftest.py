"""Chaos fixtures: `jobgate worker` subprocesses, and dependencies to take away and give back."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli.migrate import upgrade
from gateway.app import create_app
from shared.settings import Settings
from tests.chaos.outages import EmbeddedPostgres, RedisServer
from tests.conftest import embedded_data_dir
from tests.polling import poll_until

FAST_WORKER_ENV = {
    "JOBGATE_WORKER_LEASE_SECONDS": "1",
    "JOBGATE_WORKER_POLL_DELAY_SECONDS": "0.05",
    "JOBGATE_WORKER_RUN_SCHEDULES": "false",
    "JOBGATE_WORKER_HEALTH_INTERVAL_SECONDS": "0.5",
}


@dataclass
class WorkerProcess:
    """A running `jobgate worker` and the file it logs to."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, timeout: float) -> int:
        """Wait for the process to end (without blocking the event loop); its exit code."""
        return await asyncio.to_thread(self.process.wait, timeout)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, *, timeout: float = 10) -> None:
        """Wait until the worker has logged `text` (e.g. the event name of a state change)."""
        await poll_until(lambda: text in self.log(), timeout=timeout, what=f"worker logs {text!r}")

    async def started(self) -> WorkerProcess:
        """Wait until it serves its queues: a Python process's start-up takes seconds on a busy
        machine, and tests time what the worker does, not how long its imports took."""
        await self.wait_for_log("worker.started", timeout=STARTUP_TIMEOUT_SECONDS)
        return self


SpawnWorker = Callable[..., WorkerProcess]

STARTUP_TIMEOUT_SECONDS = 60

RUNNERS = ("jobgate worker", "arq worker.WorkerSettings")
"""The two documented ways to start a worker process; both must give the same guarantees."""


def _worker_command(runner: str, queue: str | None, options: tuple[str, ...]) -> list[str]:
    """The command line of `runner` serving `queue` (None: every queue, the default)."""
    if runner == "arq worker.WorkerSettings":
        # ARQ's own command line; the queue comes from JOBGATE_WORKER_QUEUES (see `spawn`).
        return [sys.executable, "-m", "arq", "worker.WorkerSettings", *options]
    queues = ["--queue", queue] if queue is not None else []
    return [sys.executable, "-m", "cli", "worker", *queues, *options]


@pytest.fixture
def spawn_worker(settings: Settings, tmp_path: Path) -> Iterator[SpawnWorker]:
    """Start `jobgate worker --queue default` processes on the test database and Redis.

    Positional arguments are more command-line options; keyword arguments become
    `JOBGATE_<NAME>` variables (`database_url=...` points one elsewhere). `runner` picks the
    command (one of `RUNNERS`), `queue=None` serves every queue. Each process logs to its own
    file under `tmp_path`; any still running at teardown is killed.
    """
    started: list[WorkerProcess] = []

    def spawn(
        *options: str,
        runner: str = "jobgate worker",
        queue: str | None = "default",
        **overrides: object,
    ) -> WorkerProcess:
        env = {
            **os.environ,
            "JOBGATE_DATABASE_URL": settings.require_database_url(),
            "JOBGATE_REDIS_URL": settings.require_redis_url(),
            **FAST_WORKER_ENV,
            **{f"JOBGATE_{name.upper()}": str(value) for name, value in overrides.items()},
        }
        env.pop("JOBGATE_WORKER_QUEUES", None)
        if queue is not None and runner == "arq worker.WorkerSettings":
            env["JOBGATE_WORKER_QUEUES"] = queue
        log_path = tmp_path / f"worker-{len(started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(  # noqa: S603 (our interpreter; options from the test)
                _worker_command(runner, queue, options),
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, `--processes` children too
            )
        started.append(WorkerProcess(process, log_path))
        return started[-1]

    yield spawn
    for worker in started:
        # The whole group: a supervisor's children outlive it otherwise, and one left over
        # from a failed test kept claiming jobs and webhooks in later runs' databases.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)


@pytest.fixture(params=RUNNERS)
def runner(request: pytest.FixtureRequest) -> str:
    """Each of the documented worker commands in turn."""
    return str(request.param)


@pytest.fixture
def spawn_runner(spawn_worker: SpawnWorker, runner: str) -> SpawnWorker:
    """`spawn_worker`, started with the command of this test's `runner`."""
    return functools.partial(spawn_worker, runner=runner)


GatewayFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_gateway(settings: Settings) -> AsyncIterator[GatewayFactory]:
    """A gateway built from `settings` with some fields replaced, lifespan running."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: object) -> httpx.AsyncClient:
            app = create_app(settings.model_copy(update=overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://jobgate.test")
            )

        yield make


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis on its own port, running; the test may stop and restart it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def embedded_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A migrated PostgreSQL of the test's own, running; the test may stop and restart it."""
    with embedded_data_dir() as data_dir:
        server = await asyncio.to_thread(EmbeddedPostgres, data_dir)
        await asyncio.to_thread(upgrade, server.url)
        yield server
        await asyncio.to_thread(server.cleanup)
