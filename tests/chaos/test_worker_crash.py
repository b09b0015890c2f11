"""A worker killed mid-job: its job runs again elsewhere, and cannot kill workers forever."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_job


def _running(attempt: int) -> Any:
    """Running its `attempt`-th attempt, and past its first progress report (really mid-job)."""
    return lambda job: (
        job["status"] == "running" and job["attempts"] == attempt and job["progress"] is not None
    )


async def test_a_killed_workers_job_runs_again_on_another_worker(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    spawn_runner: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    doomed = await spawn_runner().started()
    job = await submit(client, token, "sleep", {"seconds": 3, "steps": 6})
    await poll_job(client, token, job["id"], _running(1), timeout=15)

    doomed.signal(signal.SIGKILL)
    assert await doomed.exit_code(timeout=5) == -signal.SIGKILL
    killed_at = time.monotonic()
    await start_worker(settings=settings.model_copy(update={"worker_lease_seconds": 1}))

    await poll_job(client, token, job["id"], _running(2), timeout=5)
    picked_up_after = time.monotonic() - killed_at
    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=10)
    assert done["attempts"] == 2
    assert done["result"]["slept"] >= 3  # the whole job ran again, from the start
    # One lease (1 s) at most, plus polling; far from ARQ's own in-progress timeout (days).
    assert picked_up_after < 3, picked_up_after


async def test_a_job_that_keeps_killing_its_workers_fails_as_worker_lost(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    spawn_runner: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    """max_tries 1 and 1 lost attempt allowed: two starts, both killed, then `worker_lost`."""
    _, token = await make_tenant(sessionmaker)
    job = await submit(
        client, token, "sleep", {"seconds": 60, "steps": 60}, options={"max_tries": 1}
    )
    current = await spawn_runner(worker_lost_attempts_allowed=1).started()
    for attempt in (1, 2):
        await poll_job(client, token, job["id"], _running(attempt), timeout=15)
        # The next worker starts up while this one holds the job's lease.
        following = spawn_runner(worker_lost_attempts_allowed=1) if attempt == 1 else None
        current.signal(signal.SIGKILL)
        await current.exit_code(timeout=5)
        current = following or current

    await start_worker(
        settings=settings.model_copy(
            update={"worker_lease_seconds": 1, "worker_lost_attempts_allowed": 1}
        )
    )
    failed = await wait_for_status(client, token, job["id"], "failed", timeout=10)
    assert failed["attempts"] == 2
    assert failed["error"]["type"] == "worker_lost"
