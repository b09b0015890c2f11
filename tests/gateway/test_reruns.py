"""Re-runs (`/jobs/{id}/retry`, `/workflows/{id}/retry`) when Redis refuses the hand-off.

A refused re-run is a 503 that leaves no trace: the original is not linked to a job that does
not exist, stays in the dead-letter view, and can be re-run once Redis is back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from arq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job, Workflow
from tests.conftest import ClientFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
FAILING = {"fail_times": 1, "permanent": True}


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """How many jobs and workflows exist, all tenants."""
    async with sessionmaker() as session:
        jobs = await session.scalar(select(func.count()).select_from(Job))
        workflows = await session.scalar(select(func.count()).select_from(Workflow))
    return int(jobs or 0), int(workflows or 0)


async def _job(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def _workflow(client: httpx.AsyncClient, token: str, url: str) -> dict[str, Any]:
    response = await client.get(url, headers=auth(token))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _wait_workflow(
    client: httpx.AsyncClient, token: str, url: str, status: str, *, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := await _workflow(client, token, url))["status"] != status:
        assert time.monotonic() < deadline, f"the workflow is {found['status']}, not {status}"
        await asyncio.sleep(0.05)
    return found


class TestRetryRefusedByRedis:
    async def test_a_refused_re_run_leaves_the_original_as_it_was(
        self,
        client: httpx.AsyncClient,
        make_client: ClientFactory,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        failed = await submit(client, token, "flaky", FAILING)
        before = await wait_for_status(client, token, failed["id"], "failed")
        rows = await _rows(sessionmaker)
        down = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)

        refused = await down.post(f"/jobs/{failed['id']}/retry", headers=auth(token))
        assert_problem(refused, 503, "queue-unavailable")
        assert "location" not in refused.headers
        assert await _job(client, token, failed["id"]) == before  # retried_by still null
        assert await _rows(sessionmaker) == rows

        # Redis is back: the same job re-runs, once.
        again = await client.post(f"/jobs/{failed['id']}/retry", headers=auth(token))
        assert again.status_code == 201, again.text
        assert (await _job(client, token, failed["id"]))["retried_by"] == again.json()["id"]
        twice = await client.post(f"/jobs/{failed['id']}/retry", headers=auth(token))
        assert_problem(twice, 409, "job-state-conflict")


class TestWorkflowRetryRefusedByRedis:
    async def test_a_refused_workflow_retry_leaves_the_workflow_failed(
        self,
        client: httpx.AsyncClient,
        make_client: ClientFactory,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        definition = {
            "type": "chain",
            "steps": [
                {"type": "step", "job": "echo", "args": {"message": "first"}},
                {"type": "step", "job": "flaky", "args": FAILING},
            ],
        }
        submitted = await client.post(
            "/workflows", json={"workflow": definition}, headers=auth(token)
        )
        assert submitted.status_code == 202, submitted.text
        url = f"/workflows/{submitted.json()['id']}"

        before = await _wait_workflow(client, token, url, "failed")
        rows = await _rows(sessionmaker)
        down = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)

        refused = await down.post(f"{url}/retry", headers=auth(token))
        assert_problem(refused, 503, "queue-unavailable")
        assert await _workflow(client, token, url) == before
        assert await _rows(sessionmaker) == rows
        # A new workflow refused at its first hand-off is not stored either.
        new = await down.post("/workflows", json={"workflow": definition}, headers=auth(token))
        assert_problem(new, 503, "queue-unavailable")
        assert await _rows(sessionmaker) == rows
        failed_step = before["steps"][1]["job"]["id"]
        assert (await _job(client, token, failed_step))["retried_by"] is None

        again = await client.post(f"{url}/retry", headers=auth(token))
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "running"
        assert (await _job(client, token, failed_step))["retried_by"] is not None
