"""Observability fixtures: `jobgate worker` processes serving metrics, scraped like Prometheus.

`spawn_worker` (a real `jobgate worker --queue default` process) and `token` (a key of the
tenant `acme`) are the chaos and gateway suites' own fixtures, shared rather than re-made.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker, WorkerProcess, spawn_worker
from tests.chaos.outages import free_port
from tests.gateway.conftest import token

__all__ = ["spawn_worker", "token"]

ANNOUNCE_INTERVAL_SECONDS = 0.2

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse_samples(text: str) -> Samples:
    """Every sample of a scrape: name -> sorted labels -> value."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@dataclass
class MetricsWorker:
    """A `jobgate worker` process and the port its `/metrics` listens on."""

    process: WorkerProcess
    port: int

    @property
    def name(self) -> str:
        """How it announces itself: `host:pid`."""
        return f"{socket.gethostname()}:{self.process.process.pid}"

    async def scrape(self) -> str:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5)
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture
def metrics_worker(spawn_worker: SpawnWorker) -> Callable[[], MetricsWorker]:
    """Start a worker serving metrics on a free port and announcing itself every 0.2 s."""

    def start() -> MetricsWorker:
        port = free_port()
        process = spawn_worker(
            worker_metrics_port=port, worker_announce_interval_seconds=ANNOUNCE_INTERVAL_SECONDS
        )
        return MetricsWorker(process, port)

    return start


RunCli = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
def run_cli(settings: Settings) -> RunCli:
    """Run `jobgate <args>` against the test database and Redis, off the event loop."""

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "JOBGATE_DATABASE_URL": settings.require_database_url(),
            "JOBGATE_REDIS_URL": settings.require_redis_url(),
        }
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run
