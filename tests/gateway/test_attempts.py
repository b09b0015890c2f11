"""`GET /jobs/{id}/attempts`: the caller's own jobs only, each attempt as it ended.

The attempts here are recorded by the worker's own statements (claim, retry, hand-back,
success), called as a worker calls them; tests/worker/test_attempts.py runs real workers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import status_changes
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.retention import Retention
from shared.jobs.rows import ClaimedJob, JobKey
from shared.jobs.status_changes import Success, claim_jobs, record_successes
from shared.tenants.apikeys import Scope
from tests.factories import auth, make_api_key, make_tenant, read_attempts, submit
from tests.gateway.problem_checks import assert_problem, error_locations

KEEP = Retention(default_seconds=3600, by_type={})

LATER = datetime.now(UTC) + timedelta(days=1)


async def _claim(sessionmaker: async_sessionmaker[AsyncSession], key: JobKey) -> ClaimedJob:
    (claimed,) = await claim_jobs(sessionmaker.kw["bind"], [key], retention=KEEP)
    return claimed


async def _succeed(
    sessionmaker: async_sessionmaker[AsyncSession], key: JobKey, worker: str
) -> ClaimedJob:
    """Claim the job and record its success, as a worker named `worker` would."""
    claimed = await _claim(sessionmaker, key)
    success = Success(key, {"message": "done"}, LATER, RanAttempt.of(claimed, worker))
    assert await record_successes(sessionmaker.kw["bind"], [success]) == {key}
    return claimed


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class TestListAttempts:
    async def test_without_a_key_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/jobs/{uuid.uuid4()}/attempts")
        assert_problem(response, 401, "unauthenticated")

    async def test_a_key_without_the_read_scope_is_403(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})
        submit_only = await make_api_key(sessionmaker, tenant_id, Scope.SUBMIT)
        response = await client.get(f"/jobs/{job['id']}/attempts", headers=auth(submit_only))
        assert_problem(response, 403, "forbidden")

    async def test_another_tenants_job_is_404_like_a_missing_one(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker, "acme")
        _, other_token = await make_tenant(sessionmaker, "globex")
        job = await submit(client, token, "echo", {"message": "hi"})
        await _succeed(sessionmaker, JobKey(uuid.UUID(tenant_id), uuid.UUID(job["id"])), "w:1")

        foreign = await client.get(f"/jobs/{job['id']}/attempts", headers=auth(other_token))
        missing = await client.get(f"/jobs/{uuid.uuid4()}/attempts", headers=auth(other_token))

        assert (
            assert_problem(foreign, 404, "job-not-found")["title"]
            == (assert_problem(missing, 404, "job-not-found")["title"])
        )
        assert "w:1" not in foreign.text
        assert len(await read_attempts(client, token, job["id"])) == 1  # its owner sees it

    async def test_a_job_not_started_yet_has_no_attempts(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"}, {"delay_seconds": 600})
        assert await read_attempts(client, token, job["id"]) == []

    async def test_a_succeeded_attempt_has_its_worker_and_timings(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})
        await _succeed(sessionmaker, JobKey(uuid.UUID(tenant_id), uuid.UUID(job["id"])), "w:1")
        done = (await client.get(f"/jobs/{job['id']}", headers=auth(token))).json()

        (attempt,) = await read_attempts(client, token, job["id"])

        assert attempt["number"] == 1
        assert (attempt["outcome"], attempt["worker"], attempt["error"]) == (
            "succeeded",
            "w:1",
            None,
        )
        assert attempt["started_at"] == done["started_at"]
        assert attempt["finished_at"] == done["finished_at"]
        started, finished = _time(attempt["started_at"]), _time(attempt["finished_at"])
        assert attempt["duration_seconds"] == (finished - started).total_seconds() >= 0

    async def test_lost_handed_back_and_running_attempts(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A lost attempt is listed without a worker; a handed-back one not at all."""
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 5})
        tenant, job_id = uuid.UUID(tenant_id), uuid.UUID(job["id"])
        key = JobKey(tenant, job_id)
        await _claim(sessionmaker, key)  # attempt 1: its worker dies
        second = await _claim(sessionmaker, key)  # re-delivered while `running`: attempt 2
        async with sessionmaker() as session:
            await status_changes.record_retry(
                session,
                tenant_id=tenant,
                job_id=job_id,
                error={"type": "ValueError", "message": "bad input"},
                retry_at=datetime.now(UTC),
                attempt=RanAttempt.of(second, "w:2"),
            )
            await session.commit()
        await _claim(sessionmaker, key)  # attempt 3, handed back: not counted
        async with sessionmaker() as session:
            handed = await status_changes.record_handed_back(
                session, tenant_id=tenant, job_id=job_id, run_at=datetime.now(UTC)
            )
            await session.commit()
        assert handed is not None
        third = await _claim(sessionmaker, key)  # attempt 3 again, running now

        attempts = await read_attempts(client, token, job["id"])

        assert [(a["number"], a["outcome"], a["worker"]) for a in attempts] == [
            (1, "lost", None),
            (2, "retrying", "w:2"),
            (3, "running", None),
        ]
        lost, retried, running = attempts
        assert lost["started_at"] is lost["finished_at"] is lost["duration_seconds"] is None
        assert retried["error"] == {"type": "ValueError", "message": "bad input"}
        assert _time(retried["started_at"]) == second.started_at
        assert _time(running["started_at"]) == third.started_at
        assert running["finished_at"] is None and running["error"] is None

    async def test_the_last_attempt_of_a_job_failed_as_worker_lost_is_lost(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 1})
        tenant, job_id = uuid.UUID(tenant_id), uuid.UUID(job["id"])
        claimed = await _claim(sessionmaker, JobKey(tenant, job_id))
        async with sessionmaker() as session:
            failed = await status_changes.fail_lost_job(
                session, tenant_id=tenant, job_id=job_id, lost_attempts_allowed=0, expires_at=LATER
            )
            await session.commit()
        assert failed is not None

        (attempt,) = await read_attempts(client, token, job["id"])

        # The job's `error` is `worker_lost`, jobgate's own: not the attempt's.
        assert (attempt["outcome"], attempt["error"], attempt["worker"]) == ("lost", None, None)
        assert _time(attempt["started_at"]) == claimed.started_at

    async def test_a_malformed_id_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get("/jobs/not-a-uuid/attempts", headers=auth(token))
        assert error_locations(response) == [["path", "job_id"]]
