"""Issue 22 §6 on real worker processes, under both runners: a job sent to another of its
type's queues runs on a worker of that queue, and a retry comes after the delay the job chose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.chaos.conftest import GatewayFactory, SpawnWorker
from tests.choice_jobs import BACKOFF_SECONDS, UPSTREAM_CALL, WORKER_MODULES
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.polling import poll_job
from worker.testing import declared

# A worker process starts per test; a start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(120)

RETRY_AFTER_SECONDS = 2.0
"""The delay the job chooses: long enough to tell from an immediate retry, far below the
type's backoff (`BACKOFF_SECONDS`)."""
LATENESS_SECONDS = 1.5
"""How late a due retry may start: the worker's polls (0.05 s) and a busy two-core host."""
HOLD_SECONDS = 1.0
"""How long a job on an unserved queue is watched starting nothing: twenty polls."""


@pytest.fixture(autouse=True)
def upstream_call() -> Iterator[None]:
    """`upstream_call` (queues `default` and `bulk`) registered in this process for the test."""
    with declared(UPSTREAM_CALL):
        yield


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_job_sent_to_the_bulk_queue_runs_on_a_worker_of_that_queue(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    client = await make_gateway()
    _, token = await make_tenant(sessionmaker)
    worker = await spawn_runner(queue="bulk", **WORKER_MODULES).started()

    bulk = await submit(client, token, "upstream_call", {}, {"queue": "bulk"})
    plain = await submit(client, token, "upstream_call", {})
    assert (bulk["queue"], plain["queue"]) == ("bulk", "default")

    done = await wait_for_status(client, token, bulk["id"], "succeeded", "failed", timeout=20)
    assert done["status"] == "succeeded", done
    assert (done["queue"], done["result"]["attempt"]) == ("bulk", 1)
    assert done["result"]["worker"].endswith(f":{worker.process.pid}")
    # No worker serves `default`: the job left on the type's default queue waits there.
    await asyncio.sleep(HOLD_SECONDS)
    waiting = (await client.get(f"/jobs/{plain['id']}", headers=auth(token))).json()
    assert (waiting["status"], waiting["queue"]) == ("queued", "default")


async def test_a_retry_comes_after_the_delay_the_job_chose(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
) -> None:
    client = await make_gateway()
    _, token = await make_tenant(sessionmaker)
    await spawn_runner(**WORKER_MODULES).started()
    args = {"busy_times": 1, "retry_after_seconds": RETRY_AFTER_SECONDS}
    job = await submit(client, token, "upstream_call", args)

    retrying = await poll_job(
        client, token, job["id"], lambda job: job["status"] == "retrying", timeout=20
    )
    assert retrying["error"] == {"type": "RetryableJobError", "message": "the upstream is busy"}
    # The next try is due the chosen delay after the attempt, not the type's backoff.
    chosen = (_at(retrying["scheduled_at"]) - _at(retrying["started_at"])).total_seconds()
    assert RETRY_AFTER_SECONDS <= chosen < RETRY_AFTER_SECONDS + LATENESS_SECONDS < BACKOFF_SECONDS

    done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=20)
    assert (done["status"], done["attempts"], done["result"]["attempt"]) == ("succeeded", 2, 2)
    late = (_at(done["started_at"]) - _at(retrying["scheduled_at"])).total_seconds()
    assert 0 <= late < LATENESS_SECONDS
