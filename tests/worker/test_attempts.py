"""Attempt history on a real worker: each attempt's outcome, error, worker and timings, as
`GET /jobs/{id}/attempts` lists them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
from arq.worker import Worker
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import operator_queries
from shared.models import Job, JobAttempt
from tests.factories import auth, make_tenant, read_attempts, submit, wait_for_status
from tests.polling import poll_job
from worker.settings import worker_name


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_flaky_jobs_attempts_list_each_failure_then_the_success(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "flaky", {"fail_times": 2})
    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=15)

    attempts = await read_attempts(client, token, job["id"])

    assert [(a["number"], a["outcome"]) for a in attempts] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]
    assert [a["error"] for a in attempts] == [
        {
            "type": "RetryableJobError",
            "message": "failing on purpose, attempt 1 of 2 to fail",
        },
        {
            "type": "RetryableJobError",
            "message": "failing on purpose, attempt 2 of 2 to fail",
        },
        None,
    ]
    assert {a["worker"] for a in attempts} == {worker_name()}
    for attempt in attempts:
        started, finished = _time(attempt["started_at"]), _time(attempt["finished_at"])
        assert attempt["duration_seconds"] == (finished - started).total_seconds() >= 0
    # Each retry waited for its backoff (1 s, then 2 s, up to 20 % earlier) after the failure.
    for earlier, later, backoff_seconds in zip(attempts, attempts[1:], (1, 2), strict=False):
        waited = _time(later["started_at"]) - _time(earlier["finished_at"])
        assert waited >= timedelta(seconds=0.8 * backoff_seconds), (earlier, later)
    assert attempts[-1]["started_at"] == done["started_at"]
    assert attempts[-1]["finished_at"] == done["finished_at"]
    assert done["attempts"] == 3


async def test_a_permanent_failure_is_one_failed_attempt(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
    failed = await wait_for_status(client, token, job["id"], "failed")

    (attempt,) = await read_attempts(client, token, job["id"])

    assert attempt["outcome"] == "failed"
    assert attempt["error"] == failed["error"]
    assert attempt["error"]["type"] == "permanent"
    assert attempt["finished_at"] == failed["finished_at"]


async def test_a_cancelled_running_attempt_is_recorded_cancelled(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
    await poll_job(client, token, job["id"], lambda j: j["status"] == "running")
    (running,) = await read_attempts(client, token, job["id"])
    assert (running["outcome"], running["finished_at"]) == ("running", None)

    response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
    assert response.status_code == 202, response.text
    await wait_for_status(client, token, job["id"], "cancelled", timeout=5)

    (attempt,) = await read_attempts(client, token, job["id"])
    assert (attempt["outcome"], attempt["worker"]) == ("cancelled", worker_name())
    assert attempt["error"]["type"] == "cancelled"
    assert attempt["started_at"] == running["started_at"]


async def test_the_purge_deletes_a_jobs_attempts_with_it(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
    await wait_for_status(client, token, job["id"], "failed")
    count = select(func.count()).select_from(JobAttempt)
    async with sessionmaker() as session:
        assert await session.scalar(count) == 1
        await session.execute(
            update(Job).where(Job.id == uuid.UUID(job["id"])).values(expires_at=func.now())
        )
        await session.commit()
        assert await operator_queries.purge_expired(session, batch_size=10) == 1
        assert await session.scalar(count) == 0
