"""`POST /jobs/{name}`: submit one job of a registered type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from shared.tenants.apikeys import Scope
from tests.conftest import ClientFactory
from tests.factories import auth, make_api_key, make_tenant, submit
from tests.gateway.problem_checks import assert_problem, error_locations

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Job))).scalar_one()


async def _listed(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await client.get("/jobs", headers=auth(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), f"{value} is not UTC"
    return parsed


class TestSubmitJob:
    async def test_without_key_is_401(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        response = await client.post("/jobs/echo", json={"args": {"message": "hi"}})
        assert_problem(response, 401, "unauthenticated")
        assert await _count_jobs(sessionmaker) == 0

    async def test_unknown_job_type_still_needs_a_key(self, client: httpx.AsyncClient) -> None:
        """The catalogue is not probed anonymously: no key is 401 before any 404."""
        response = await client.post("/jobs/no_such_type", json={"args": {}})
        assert_problem(response, 401, "unauthenticated")

    async def test_key_without_submit_scope_is_403(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker)
        read_only = await make_api_key(sessionmaker, tenant_id, Scope.READ, Scope.CANCEL)
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "hi"}}, headers=auth(read_only)
        )
        body = assert_problem(response, 403, "forbidden")
        assert "jobs:submit" in body["detail"]
        assert await _count_jobs(sessionmaker) == 0

    async def test_unknown_job_type_is_404(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post("/jobs/no_such_type", json={"args": {}}, headers=auth(token))
        body = assert_problem(response, 404, "unknown-job-type")
        assert "no_such_type" in body["detail"]

    async def test_accepted_job_is_queued_with_the_type_defaults(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        before = datetime.now(UTC)
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "hello"}}, headers=auth(token)
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/jobs/{job['id']}"
        assert uuid.UUID(job["id"]).version == 7
        assert job["name"] == "echo"
        assert job["status"] == "queued"
        assert job["args"] == {"message": "hello", "repeat": 1}  # as validated, defaults filled
        assert job["attempts"] == 0
        # echo's declared defaults (shared/contracts.py)
        assert job["max_tries"] == 3
        assert job["timeout_seconds"] == 30.0
        assert job["priority"] == "default"
        assert job["queue"] == "default"
        assert job["labels"] == {}
        for empty in ["result", "error", "progress", "idempotency_key", "retry_of", "retried_by"]:
            assert job[empty] is None, empty
        for unset in ["scheduled_at", "started_at", "finished_at", "expires_at"]:
            assert job[unset] is None, unset
        assert before <= _parse_time(job["created_at"]) <= datetime.now(UTC)

    async def test_the_location_reads_the_same_job(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "hi"}}, headers=auth(token)
        )
        assert response.status_code == 202, response.text
        read = await client.get(response.headers["location"], headers=auth(token))
        assert read.status_code == 200, read.text
        assert read.json() == response.json()

    async def test_the_direct_path_answers_as_the_declared_endpoint(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        """A plain submit skips FastAPI's parameter handling (`DirectSubmitRoute`); one with an
        `Idempotency-Key` goes through the declared endpoint. Same job, same answer."""
        body = {
            "args": {"message": "same", "repeat": 2},
            "options": {"priority": "critical", "labels": {"team": "x"}, "max_tries": 2},
        }
        direct = await client.post("/jobs/echo", json=body, headers=auth(token))
        declared = await client.post(
            "/jobs/echo", json=body, headers=auth(token) | {"Idempotency-Key": "k-1"}
        )
        assert direct.status_code == declared.status_code == 202
        assert direct.headers["content-type"] == declared.headers["content-type"]
        volatile = {"id", "created_at", "idempotency_key"}
        same = [
            {key: value for key, value in response.json().items() if key not in volatile}
            for response in (direct, declared)
        ]
        assert same[0] == same[1]
        assert declared.json()["idempotency_key"] == "k-1"

    async def test_each_type_has_its_own_defaults(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "sleep", {"seconds": 0})
        assert (job["max_tries"], job["timeout_seconds"]) == (1, 3700.0)
        assert job["args"] == {"seconds": 0.0, "steps": 1}

    async def test_job_type_without_args_takes_an_empty_object(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "health_check", {})
        assert job["args"] == {}
        assert job["status"] == "queued"

    async def test_options_override_the_defaults(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        options = {
            "priority": "critical",
            "max_tries": 7,
            "timeout_seconds": 12.5,
            "labels": {"env": "prod", "team.a/b-c": ""},
        }
        job = await submit(client, token, "echo", {"message": "hi"}, options)
        assert job["priority"] == "critical"
        assert job["max_tries"] == 7
        assert job["timeout_seconds"] == 12.5
        assert job["labels"] == {"env": "prod", "team.a/b-c": ""}
        assert job["status"] == "queued"

    async def test_delay_seconds_schedules_the_job(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 120})
        assert job["status"] == "scheduled"
        created, scheduled = _parse_time(job["created_at"]), _parse_time(job["scheduled_at"])
        assert abs((scheduled - created) - timedelta(seconds=120)) < timedelta(seconds=1)

    async def test_run_at_in_the_future_schedules_the_job_in_utc(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        run_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        elsewhere = run_at.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
        job = await submit(client, token, "echo", {"message": "later"}, {"run_at": elsewhere})
        assert job["status"] == "scheduled"
        assert _parse_time(job["scheduled_at"]) == run_at

    async def test_run_at_in_the_past_queues_the_job(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        run_at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        job = await submit(client, token, "echo", {"message": "now"}, {"run_at": run_at})
        assert job["status"] == "queued"
        assert job["scheduled_at"] is None

    async def test_delay_and_run_at_together_is_422(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = {"args": {"message": "hi"}, "options": {"delay_seconds": 5, "run_at": run_at}}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        assert error_locations(response) == [["body", "options"]]
        assert await _listed(client, token) == []

    @pytest.mark.parametrize(
        ("args", "loc", "kind"),
        [
            ({}, ["body", "args", "message"], "missing"),
            ({"message": "hi", "repeat": 0}, ["body", "args", "repeat"], "greater_than_equal"),
            ({"message": "hi", "repeat": 101}, ["body", "args", "repeat"], "less_than_equal"),
            ({"message": "x" * 10_001}, ["body", "args", "message"], "string_too_long"),
            ({"message": 5}, ["body", "args", "message"], "string_type"),
            ({"message": "hi", "colour": "red"}, ["body", "args", "colour"], "extra_forbidden"),
        ],
    )
    async def test_invalid_args_are_422_and_store_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        args: dict[str, Any],
        loc: list[str],
        kind: str,
    ) -> None:
        response = await client.post("/jobs/echo", json={"args": args}, headers=auth(token))
        assert_problem(response, 422, "validation-error")
        issues = response.json()["errors"]
        assert [(issue["loc"], issue["type"]) for issue in issues] == [(loc, kind)]
        assert "x" * 100 not in response.text  # the offending input is not echoed back
        assert await _listed(client, token) == []
        assert await _count_jobs(sessionmaker) == 0

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({}, ["body", "args"]),
            ({"args": {"message": "hi"}, "extra": 1}, ["body", "extra"]),
            (
                {"args": {"message": "hi"}, "options": {"retries": 2}},
                ["body", "options", "retries"],
            ),
            ({"args": {"message": "hi"}, "options": {"priority": "urgent"}}, None),
            ({"args": {"message": "hi"}, "options": {"max_tries": 0}}, None),
            ({"args": {"message": "hi"}, "options": {"timeout_seconds": 0}}, None),
            ({"args": {"message": "hi"}, "options": {"delay_seconds": -1}}, None),
            ({"args": {"message": "hi"}, "options": {"run_at": "2030-01-01T00:00:00"}}, None),
            ({"args": {"message": "hi"}, "options": {"labels": {"bad key": "v"}}}, None),
            ({"args": {"message": "hi"}, "options": {"labels": {"k": 1}}}, None),
            ([{"args": {"message": "hi"}}], ["body"]),
        ],
        ids=[
            "no-args",
            "extra-top-level-field",
            "unknown-option",
            "bad-priority",
            "zero-max-tries",
            "zero-timeout",
            "negative-delay",
            "naive-run-at",
            "bad-label-key",
            "non-string-label",
            "not-an-object",
        ],
    )
    async def test_invalid_body_is_422(
        self,
        client: httpx.AsyncClient,
        token: str,
        body: Any,
        loc: list[str] | None,
    ) -> None:
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        locations = error_locations(response)
        if loc is not None:
            assert loc in locations, locations
        assert all(location[0] == "body" for location in locations)
        assert await _listed(client, token) == []

    @pytest.mark.parametrize(
        "body",
        [
            {"args": {"message": "nul\u0000byte"}},
            {"args": {"message": "hi"}, "options": {"labels": {"k": "nul\u0000byte"}}},
        ],
        ids=["in-args", "in-label"],
    )
    async def test_nul_character_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
        body: dict[str, Any],
    ) -> None:
        """PostgreSQL's jsonb cannot hold U+0000; whatever the answer, no job half-exists."""
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        assert response.status_code >= 400
        assert response.headers["content-type"] == "application/problem+json"
        assert await _count_jobs(sessionmaker) == 0

    async def test_nul_character_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "nul\u0000byte"}}, headers=auth(token)
        )
        assert_problem(response, 422, "validation-error")

    async def test_too_many_labels_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        labels = {f"k{i}": "v" for i in range(21)}
        body = {"args": {"message": "hi"}, "options": {"labels": labels}}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        assert error_locations(response) == [["body", "options", "labels"]]

    async def test_redis_unavailable_is_503_and_stores_nothing(
        self,
        make_client: ClientFactory,
        sessionmaker: async_sessionmaker[AsyncSession],
        token: str,
    ) -> None:
        client = await make_client(redis_url=UNREACHABLE_REDIS, redis_timeout_seconds=0.5)
        response = await client.post(
            "/jobs/echo", json={"args": {"message": "hi"}}, headers=auth(token)
        )
        body = assert_problem(response, 503, "queue-unavailable")
        assert response.headers["retry-after"].isdigit()
        assert "127.0.0.1" not in response.text and ":1" not in body["detail"]
        assert "location" not in response.headers
        assert await _count_jobs(sessionmaker) == 0
        assert await _listed(client, token) == []
