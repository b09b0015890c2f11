"""Submit → run on a real ARQ worker → read the result, for every built-in job type."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_job
from worker.settings import worker_name


def _elapsed(job: dict[str, object], start: str, end: str) -> float:
    return (
        datetime.fromisoformat(str(job[end])) - datetime.fromisoformat(str(job[start]))
    ).total_seconds()


async def test_echo_runs_and_returns_its_result(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "ab", "repeat": 3})
    assert job["status"] == "queued"
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "ababab"}
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"] and done["expires_at"]


async def test_echo_repeats_once_by_default(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "hello"})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["result"] == {"message": "hello"}
    assert done["error"] is None


class TestSleep:
    async def test_finished_job_reports_every_step(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "sleep", {"seconds": 0.2, "steps": 4})
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        assert done["progress"] == {"current": 4, "total": 4, "message": "slept 4 of 4 steps"}
        assert done["result"]["slept"] >= 0.2

    async def test_running_job_shows_progress_advancing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "sleep", {"seconds": 1.2, "steps": 4})
        first = await poll_job(
            client, token, job["id"], lambda j: j["status"] == "running" and bool(j["progress"])
        )
        seen = first["progress"]["current"]
        assert first["progress"]["total"] == 4
        later = await poll_job(
            client,
            token,
            job["id"],
            lambda j: j["status"] != "running" or j["progress"]["current"] > seen,
        )
        assert later["status"] == "running"
        assert later["started_at"] and later["finished_at"] is None
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["progress"]["current"] == 4


async def test_health_check_names_the_worker(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "health_check", {})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["result"]["status"] == "ok"
    assert done["result"]["worker"]
    assert done["result"]["worker"] == worker_name()


class TestFlaky:
    async def test_succeeds_on_the_second_attempt_after_backoff(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "flaky", {"fail_times": 1})
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        assert done["attempts"] == 2
        assert done["result"] == {"attempts": 2}
        assert done["error"] is None
        # flaky's backoff: 1 s for the first retry, less at most 20 % jitter.
        assert 0.75 <= _elapsed(done, "created_at", "finished_at") < 3

    async def test_exhausted_retries_fail_and_show_retrying_between_attempts(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "flaky", {"fail_times": 5}, {"max_tries": 2})
        assert job["max_tries"] == 2
        between = await poll_job(client, token, job["id"], lambda j: j["status"] != "queued")
        if between["status"] == "running":
            between = await poll_job(client, token, job["id"], lambda j: j["status"] != "running")
        assert between["status"] == "retrying"
        assert between["attempts"] == 1
        assert between["error"]["type"] == "RetryableJobError"
        assert "attempt 1" in between["error"]["message"]
        assert between["scheduled_at"] and between["finished_at"] is None

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "failed"
        assert done["attempts"] == 2
        assert done["error"]["type"] == "RetryableJobError"
        assert "attempt 2" in done["error"]["message"]
        assert done["result"] is None
        assert done["finished_at"] and done["expires_at"]

    async def test_permanent_error_fails_at_once(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "flaky", {"fail_times": 3, "permanent": True})
        assert job["max_tries"] == 3
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "failed"
        assert done["attempts"] == 1
        assert done["error"]["type"] == "permanent"
        assert done["error"]["message"]


async def test_sleep_over_its_timeout_fails_promptly(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    started = time.monotonic()
    job = await submit(client, token, "sleep", {"seconds": 5}, {"timeout_seconds": 0.5})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=4)
    assert time.monotonic() - started < 2.5
    assert done["status"] == "failed"
    assert done["attempts"] == 1  # sleep's max_tries is 1
    assert done["error"]["type"] == "timeout"
    assert "0.5" in done["error"]["message"]


async def test_delayed_job_is_scheduled_then_runs_on_time(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 1})
    assert job["status"] == "scheduled"
    assert job["scheduled_at"]
    assert 0.9 <= _elapsed(job, "created_at", "scheduled_at") <= 1.1
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=5)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "later"}
    # ARQ's run time is the scheduled time in whole milliseconds (rounded down).
    started = datetime.fromisoformat(done["started_at"])
    assert started >= datetime.fromisoformat(done["scheduled_at"]) - timedelta(milliseconds=5)
