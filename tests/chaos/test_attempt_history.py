"""Attempt history across worker processes, under both runners: a worker killed mid-attempt
leaves a `lost` attempt (it used up a try, it recorded nothing), and the worker that runs the
job next records its attempts under its own name."""

from __future__ import annotations

import signal
import socket
from datetime import datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.chaos.conftest import SpawnWorker
from tests.factories import make_tenant, read_attempts, submit, wait_for_status
from tests.polling import poll_job

# Two worker processes start; a start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(150)


async def test_a_killed_workers_attempt_is_lost_and_the_next_workers_are_recorded(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    _, token = await make_tenant(sessionmaker)
    doomed = await spawn_runner().started()
    job = await submit(client, token, "sleep", {"seconds": 3, "steps": 6})
    await poll_job(
        client,
        token,
        job["id"],
        lambda j: j["status"] == "running" and j["progress"] is not None,
        timeout=15,
    )
    (running,) = await read_attempts(client, token, job["id"])
    assert (running["number"], running["outcome"]) == (1, "running")
    # The next worker starts up while this one holds the job's lease.
    survivor = spawn_runner()
    doomed.signal(signal.SIGKILL)
    assert await doomed.exit_code(timeout=5) == -signal.SIGKILL
    await survivor.started()
    flaky = await submit(client, token, "flaky", {"fail_times": 1})

    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=20)
    await wait_for_status(client, token, flaky["id"], "succeeded", timeout=20)

    survivor_name = f"{socket.gethostname()}:{survivor.process.pid}"
    lost, succeeded = await read_attempts(client, token, job["id"])
    assert (lost["number"], lost["outcome"], lost["worker"], lost["error"]) == (
        1,
        "lost",
        None,
        None,
    )
    assert (succeeded["number"], succeeded["outcome"]) == (2, "succeeded")
    assert succeeded["worker"] == survivor_name
    assert succeeded["started_at"] == done["started_at"]
    assert datetime.fromisoformat(succeeded["started_at"]) > datetime.fromisoformat(
        running["started_at"]
    )
    retried, recovered = await read_attempts(client, token, flaky["id"])
    assert (retried["outcome"], retried["error"]["type"]) == ("retrying", "RetryableJobError")
    assert recovered["outcome"] == "succeeded"
    assert retried["worker"] == recovered["worker"] == survivor_name
