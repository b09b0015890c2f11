"""Start deadlines at the API: `start_by` / `start_within_seconds` validated and stored, expired
jobs listed and re-run (the worker's side: tests/worker/test_start_deadlines.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ECHO
from shared.jobs import operator_queries
from shared.models import Job
from shared.python_api import Jobgate
from shared.settings import Settings
from tests.factories import auth, expire_job, make_tenant, submit
from tests.gateway.problem_checks import error_locations

SOON = timedelta(seconds=2)
"""How far two clocks read in one test may be apart (the test's and the gateway's)."""


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


class TestDeadlineOptions:
    async def test_no_deadline_unless_asked(self, client: httpx.AsyncClient, token: str) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        assert job["start_by"] is None

    async def test_start_by_is_stored_in_utc(self, client: httpx.AsyncClient, token: str) -> None:
        start_by = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        elsewhere = start_by.astimezone(timezone(timedelta(hours=-3))).isoformat()
        job = await submit(client, token, "echo", {"message": "hi"}, {"start_by": elsewhere})
        assert job["status"] == "queued"
        assert _time(job["start_by"]) == start_by
        assert _time(job["start_by"]).utcoffset() == timedelta(0)
        read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert _time(read.json()["start_by"]) == start_by

    async def test_start_within_counts_from_the_submit(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"}, {"start_within_seconds": 90})
        deadline = _time(job["created_at"]) + timedelta(seconds=90)
        assert abs(_time(job["start_by"]) - deadline) < SOON

    async def test_start_within_counts_from_the_delay(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        options = {"delay_seconds": 600, "start_within_seconds": 60}
        job = await submit(client, token, "echo", {"message": "later"}, options)
        assert job["status"] == "scheduled"
        assert _time(job["start_by"]) - _time(job["scheduled_at"]) == timedelta(seconds=60)

    async def test_the_job_types_default_applies_and_an_option_overrides_it(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        defaulted = await submit(client, token, "health_check", {})
        deadline = _time(defaulted["created_at"]) + timedelta(seconds=300)
        assert abs(_time(defaulted["start_by"]) - deadline) < SOON
        chosen = await submit(client, token, "health_check", {}, {"start_by": _in(30)})
        assert _time(chosen["start_by"]) - _time(chosen["created_at"]) < timedelta(seconds=31)
        catalogue = (await client.get("/job-types")).json()
        by_name = {entry["name"]: entry["defaults"] for entry in catalogue}
        assert by_name["health_check"]["start_within_seconds"] == 300.0
        assert by_name["echo"]["start_within_seconds"] is None

    async def test_a_batch_gives_each_job_its_own(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        body = {
            "jobs": [
                {"args": {"message": "a"}, "options": {"start_within_seconds": 30}},
                {"args": {"message": "b"}},
            ]
        }
        response = await client.post("/jobs/echo/batch", json=body, headers=auth(token))
        assert response.status_code == 202, response.text
        first, second = response.json()["jobs"]
        assert first["start_by"] is not None and second["start_by"] is None

    @pytest.mark.parametrize(
        ("options", "loc"),
        [
            ({"start_by": "2020-01-01T00:00:00Z"}, ["body", "options"]),
            ({"start_by": _in(-1)}, ["body", "options"]),
            ({"start_by": "2099-01-01T00:00:00"}, ["body", "options", "start_by"]),  # no offset
            ({"start_by": 4102444800}, ["body", "options", "start_by"]),  # a Unix time
            ({"start_by": _in(3600), "start_within_seconds": 60}, ["body", "options"]),
            ({"start_within_seconds": 0}, ["body", "options", "start_within_seconds"]),
            ({"start_within_seconds": -5}, ["body", "options", "start_within_seconds"]),
            ({"start_by": _in(60), "run_at": _in(120)}, ["body", "options"]),
            ({"start_by": _in(60), "delay_seconds": 120}, ["body", "options"]),
        ],
    )
    async def test_a_deadline_that_cannot_be_met_is_422_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        options: dict[str, Any],
        loc: list[str],
    ) -> None:
        body = {"args": {"message": "hi"}, "options": options}
        single = await client.post("/jobs/echo", json=body, headers=auth(token))
        assert error_locations(single) == [loc]
        keyed = await client.post(
            "/jobs/echo", json=body, headers={**auth(token), "Idempotency-Key": "k1"}
        )
        assert error_locations(keyed) == [loc]
        batch = await client.post(
            "/jobs/echo/batch",
            json={"jobs": [{"args": {"message": "fine"}}, body]},
            headers=auth(token),
        )
        assert error_locations(batch) == [["body", "jobs", 1, *loc[1:]]]
        assert await _count_jobs(sessionmaker) == 0


class TestFromPython:
    async def test_the_python_api_takes_the_same_options(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        await make_tenant(sessionmaker)
        async with Jobgate(settings, tenant="acme") as jobgate:
            handle = await jobgate.submit(ECHO, {"message": "hi"}, start_within_seconds=45)
            job = await handle.job()
            assert job.start_by is not None
            assert abs(job.start_by - (job.created_at + timedelta(seconds=45))) < SOON
            with pytest.raises(ValidationError, match="start_by is in the past"):
                await jobgate.submit(
                    ECHO, {"message": "late"}, start_by=datetime(2020, 1, 1, tzinfo=UTC)
                )
        assert await _count_jobs(sessionmaker) == 1


class TestExpiredJobs:
    async def test_are_listed_by_their_status(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        late = await submit(client, token, "echo", {"message": "late"}, {"start_by": _in(60)})
        await submit(client, token, "echo", {"message": "waiting"})
        await expire_job(sessionmaker, tenant_id, late["id"])

        listed = await client.get("/jobs", params={"status": "expired"}, headers=auth(token))
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        assert item["id"] == late["id"]
        assert item["error"] == {
            "type": "expired",
            "message": "not started by its start deadline (start_by)",
        }
        assert item["attempts"] == 0 and item["started_at"] is None
        assert item["finished_at"] is not None and item["expires_at"] is not None
        failed = await client.get("/jobs", params={"status": "failed"}, headers=auth(token))
        assert failed.json()["items"] == []

    async def test_are_not_dead_letters(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        late = await submit(client, token, "echo", {"message": "late"}, {"start_by": _in(60)})
        await expire_job(sessionmaker, tenant_id, late["id"])
        async with sessionmaker() as session:
            assert await operator_queries.failed_jobs(session) == []  # `jobgate dlq list`
            (expired,) = await operator_queries.expired_jobs(session)  # `jobgate inspect`
        assert str(expired.id) == late["id"]

    async def test_are_re_run_with_the_deadline_a_plain_submit_gets(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        echo = await submit(client, token, "echo", {"message": "e"}, {"start_by": _in(60)})
        probe = await submit(client, token, "health_check", {}, {"start_within_seconds": 5})
        for job in (echo, probe):
            await expire_job(sessionmaker, tenant_id, job["id"])

        reruns = {}
        for job in (echo, probe):
            response = await client.post(f"/jobs/{job['id']}/retry", headers=auth(token))
            assert response.status_code == 201, response.text
            reruns[job["name"]] = response.json()
        assert reruns["echo"]["status"] == "queued"
        assert reruns["echo"]["start_by"] is None  # echo declares no deadline
        assert reruns["echo"]["retry_of"] == echo["id"]
        fresh = _time(reruns["health_check"]["created_at"]) + timedelta(seconds=300)
        assert abs(_time(reruns["health_check"]["start_by"]) - fresh) < SOON
        old = await client.get(f"/jobs/{echo['id']}", headers=auth(token))
        assert old.json()["retried_by"] == reruns["echo"]["id"]
        again = await client.post(f"/jobs/{echo['id']}/retry", headers=auth(token))
        assert again.status_code == 409
