"""SIGTERM drains a worker: running jobs finish within the grace period, no new ones start."""

from __future__ import annotations

import signal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.polling import poll_job


async def test_sigterm_lets_the_running_job_finish_and_takes_no_new_one(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    spawn_runner: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    worker = await spawn_runner(worker_shutdown_grace_seconds=10).started()
    running = await submit(client, token, "sleep", {"seconds": 2, "steps": 4})
    await poll_job(client, token, running["id"], lambda job: job["status"] == "running", timeout=15)

    worker.signal(signal.SIGTERM)
    await worker.wait_for_log("worker.stopping")
    late = await submit(client, token, "echo", {"message": "after the signal"})

    finished = await wait_for_status(client, token, running["id"], "succeeded", timeout=10)
    assert finished["attempts"] == 1
    assert await worker.exit_code(timeout=10) == 0
    response = await client.get(f"/jobs/{late['id']}", headers=auth(token))
    assert response.json()["status"] == "queued"  # the draining worker never took it

    await start_worker()
    done = await wait_for_status(client, token, late["id"], "succeeded", timeout=10)
    assert done["attempts"] == 1


async def test_a_job_cut_off_at_the_grace_limit_runs_again_elsewhere(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    spawn_runner: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    worker = await spawn_runner(worker_shutdown_grace_seconds=0.5).started()
    job = await submit(client, token, "sleep", {"seconds": 3, "steps": 6})
    await poll_job(client, token, job["id"], lambda job: job["status"] == "running", timeout=15)

    worker.signal(signal.SIGTERM)
    assert await worker.exit_code(timeout=10) == 0
    response = await client.get(f"/jobs/{job['id']}", headers=auth(token))
    assert response.json()["status"] == "running"  # cut off, not recorded as an outcome

    await start_worker(settings=settings.model_copy(update={"worker_lease_seconds": 1}))
    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=10)
    assert done["attempts"] == 2
    assert done["result"]["slept"] >= 3
