"""A worker killed in the middle of a workflow's step: the step runs again, the workflow ends."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant


async def _read_until(
    client: httpx.AsyncClient, token: str, path: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        workflow: dict[str, Any] = (await client.get(path, headers=auth(token))).json()
        if condition(workflow):
            return workflow
        assert time.monotonic() < deadline, workflow
        await asyncio.sleep(0.05)


def _sleeping(workflow: dict[str, Any]) -> bool:
    job = workflow["steps"][1]["job"] or {}
    return job.get("status") == "running" and job.get("progress") is not None


async def test_a_killed_workers_step_runs_again_and_the_workflow_finishes(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    spawn_worker: SpawnWorker,
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    workflow = {
        "type": "chain",
        "steps": [
            {"type": "step", "job": "echo", "args": {"message": "first"}},
            {"type": "step", "job": "sleep", "args": {"seconds": 2, "steps": 4}},
            {"type": "step", "job": "echo", "args": {"message": "last"}},
        ],
    }
    doomed = spawn_worker()
    response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
    assert response.status_code == 202, response.text
    path = f"/workflows/{response.json()['id']}"
    await _read_until(client, token, path, _sleeping)

    doomed.signal(signal.SIGKILL)  # mid-step: its lease lapses and the step is delivered again
    assert await doomed.exit_code(timeout=5) == -signal.SIGKILL
    await start_worker(settings=settings.model_copy(update={"worker_lease_seconds": 1}))

    done = await _read_until(client, token, path, lambda wf: wf["status"] != "running")
    assert done["status"] == "succeeded", done
    assert done["result"] == {"message": "last"}
    assert [step["job"]["attempts"] for step in done["steps"]] == [1, 2, 1]
