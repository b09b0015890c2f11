"""`GET /jobs/{id}` (with long-poll) and `GET /jobs` (filters, cursor pagination)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from gateway.deps import Resources
from shared.jobs import status_changes
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.retention import Retention
from shared.jobs.rows import JobKey
from shared.jobs.status_changes import Success, claim_jobs, record_successes
from shared.settings import Settings
from shared.tenants.apikeys import Scope
from tests.factories import auth, make_api_key, make_tenant, submit, wait_for_status
from tests.gateway.problem_checks import assert_problem, error_locations
from tests.polling import poll_until


def _without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in problem.items() if key != "instance"}


class TestReadJob:
    async def test_without_key_is_401(self, client: httpx.AsyncClient, token: str) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        response = await client.get(f"/jobs/{job['id']}")
        assert_problem(response, 401, "unauthenticated")

    async def test_key_without_read_scope_is_403(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker)
        submit_only = await make_api_key(sessionmaker, tenant_id, Scope.SUBMIT)
        job = await submit(client, submit_only, "echo", {"message": "hi"})
        response = await client.get(f"/jobs/{job['id']}", headers=auth(submit_only))
        body = assert_problem(response, 403, "forbidden")
        assert "jobs:read" in body["detail"]

    async def test_unknown_id_is_404(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get(f"/jobs/{uuid.uuid4()}", headers=auth(token))
        assert_problem(response, 404, "job-not-found")

    async def test_other_tenants_job_is_404_exactly_like_a_missing_one(
        self, client: httpx.AsyncClient, token: str, other_token: str
    ) -> None:
        theirs = await submit(client, other_token, "echo", {"message": "secret"})
        foreign = await client.get(f"/jobs/{theirs['id']}", headers=auth(token))
        missing = await client.get(f"/jobs/{uuid.uuid4()}", headers=auth(token))
        foreign_body = assert_problem(foreign, 404, "job-not-found")
        missing_body = assert_problem(missing, 404, "job-not-found")
        assert _without_instance(foreign_body) == _without_instance(missing_body)
        assert foreign.headers.keys() == missing.headers.keys()
        assert "secret" not in foreign.text
        # ... and waiting does not change that.
        waited = await client.get(f"/jobs/{theirs['id']}", params={"wait": 1}, headers=auth(token))
        assert _without_instance(assert_problem(waited, 404, "job-not-found")) == (
            _without_instance(missing_body)
        )

    async def test_reads_the_job(self, client: httpx.AsyncClient, token: str) -> None:
        job = await submit(client, token, "echo", {"message": "hi", "repeat": 2})
        response = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == job

    async def test_wait_answers_as_soon_as_the_job_finishes(
        self, client: httpx.AsyncClient, token: str, worker: Worker
    ) -> None:
        job = await submit(client, token, "echo", {"message": "ab", "repeat": 2})
        started = time.monotonic()
        response = await client.get(f"/jobs/{job['id']}", params={"wait": 10}, headers=auth(token))
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        done = response.json()
        assert done["status"] == "succeeded", done
        assert done["result"] == {"message": "abab"}
        assert elapsed < 3, f"long-poll took {elapsed:.1f}s for a job that finishes at once"

    async def test_wait_on_a_finished_job_answers_at_once(
        self, client: httpx.AsyncClient, token: str, worker: Worker
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        await wait_for_status(client, token, job["id"], "succeeded", timeout=10)
        started = time.monotonic()
        response = await client.get(f"/jobs/{job['id']}", params={"wait": 30}, headers=auth(token))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        assert time.monotonic() - started < 1

    async def test_wait_without_a_worker_answers_the_queued_job_after_the_wait(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        started = time.monotonic()
        response = await client.get(f"/jobs/{job['id']}", params={"wait": 1.5}, headers=auth(token))
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        assert 1.4 <= elapsed < 4, elapsed

    async def test_wait_reads_the_job_again_only_once_its_end_is_announced(
        self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """`running` and progress notifications do not wake a long-poll; the terminal one does.

        The job is moved by the worker's own statements, a notification each, with pauses
        long enough for each to be delivered on its own.
        """
        tenant, token = await make_tenant(sessionmaker)
        tenant_id = uuid.UUID(tenant)
        app = create_app(settings.model_copy(update={"wait_recheck_seconds": 60}))
        reads = 0

        def count_job_reads(*args: Any) -> None:
            nonlocal reads
            reads += re.search(r"\bFROM job\b", args[2]) is not None

        async with app.router.lifespan_context(app):
            resources: Resources = app.state.resources
            event.listen(resources.engine.sync_engine, "before_cursor_execute", count_job_reads)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://jobgate.test"
            ) as client:
                job = await submit(client, token, "echo", {"message": "hi"})  # no worker: queued
                waiting = asyncio.create_task(
                    client.get(f"/jobs/{job['id']}", params={"wait": 30}, headers=auth(token))
                )
                # The request's read, and the one after subscribing.
                await poll_until(lambda: reads == 2, what="the long-poll's first reads")
                key = JobKey(tenant_id, uuid.UUID(job["id"]))
                engine = resources.engine
                (claimed,) = await claim_jobs(engine, [key], retention=Retention(3600, {}))
                for step in range(1, 4):
                    await asyncio.sleep(0.1)
                    async with sessionmaker() as session:
                        progress = {"current": step, "total": 3}
                        assert await status_changes.record_progress(
                            session, tenant_id=tenant_id, job_id=key.job_id, progress=progress
                        )
                        await session.commit()
                await asyncio.sleep(0.1)
                assert reads == 2, "woken by a change that was not the job's end"
                expires = datetime.now(UTC) + timedelta(days=1)
                success = Success(key, {"message": "hi"}, expires, RanAttempt.of(claimed, "test"))
                assert await record_successes(engine, [success])
                response = await waiting
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        assert reads == 3

    @pytest.mark.parametrize("wait", ["61", "-1", "soon"])
    async def test_bad_wait_is_422(self, client: httpx.AsyncClient, token: str, wait: str) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        response = await client.get(
            f"/jobs/{job['id']}", params={"wait": wait}, headers=auth(token)
        )
        assert error_locations(response) == [["query", "wait"]]

    @pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "0193"])
    async def test_non_uuid_id_is_422(
        self, client: httpx.AsyncClient, token: str, job_id: str
    ) -> None:
        response = await client.get(f"/jobs/{job_id}", headers=auth(token))
        assert error_locations(response) == [["path", "job_id"]]


async def _list(
    client: httpx.AsyncClient, token: str, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await client.get("/jobs", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "next_cursor"}
    return page["items"], page["next_cursor"]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


class TestListJobs:
    async def test_without_key_is_401(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/jobs"), 401, "unauthenticated")

    async def test_key_without_read_scope_is_403(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, _ = await make_tenant(sessionmaker)
        submit_only = await make_api_key(sessionmaker, tenant_id, Scope.SUBMIT)
        response = await client.get("/jobs", headers=auth(submit_only))
        assert_problem(response, 403, "forbidden")

    async def test_other_tenants_jobs_never_appear(
        self, client: httpx.AsyncClient, token: str, other_token: str
    ) -> None:
        mine = await submit(client, token, "echo", {"message": "mine"})
        for _ in range(3):
            await submit(client, other_token, "echo", {"message": "theirs"})
        items, cursor = await _list(client, token, name="echo", status="queued")
        assert _ids(items) == [mine["id"]]
        assert cursor is None
        theirs, _ = await _list(client, other_token)
        assert mine["id"] not in _ids(theirs)
        assert len(theirs) == 3

    async def test_empty_list(self, client: httpx.AsyncClient, token: str) -> None:
        assert await _list(client, token) == ([], None)

    async def test_newest_first(self, client: httpx.AsyncClient, token: str) -> None:
        submitted = [await submit(client, token, "echo", {"message": str(i)}) for i in range(5)]
        items, cursor = await _list(client, token)
        assert _ids(items) == _ids(submitted)[::-1]
        assert items[0] == submitted[-1]
        assert cursor is None

    async def test_pages_cover_every_job_exactly_once(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        submitted = [await submit(client, token, "echo", {"message": str(i)}) for i in range(25)]
        seen: list[str] = []
        sizes: list[int] = []
        cursor: str | None = None
        for _ in range(10):  # 25 jobs at 7 a page is 4 pages; more would be a loop
            params: dict[str, Any] = {"limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            items, cursor = await _list(client, token, **params)
            seen += _ids(items)
            sizes.append(len(items))
            if cursor is None:
                break
        assert cursor is None
        assert sizes == [7, 7, 7, 4]
        assert seen == _ids(submitted)[::-1]
        assert len(set(seen)) == 25

    async def test_a_page_that_ends_exactly_at_the_last_job_has_no_cursor(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        for i in range(4):
            await submit(client, token, "echo", {"message": str(i)})
        first, cursor = await _list(client, token, limit=2)
        assert cursor is not None
        second, cursor = await _list(client, token, limit=2, cursor=cursor)
        assert len(first) == len(second) == 2
        assert cursor is None

    async def test_filter_by_status(self, client: httpx.AsyncClient, token: str) -> None:
        queued = await submit(client, token, "echo", {"message": "now"})
        scheduled = await submit(client, token, "echo", {"message": "later"}, {"delay_seconds": 60})
        items, _ = await _list(client, token, status="scheduled")
        assert _ids(items) == [scheduled["id"]]
        items, _ = await _list(client, token, status="queued")
        assert _ids(items) == [queued["id"]]
        items, _ = await _list(client, token, status=["queued", "scheduled"])
        assert _ids(items) == [scheduled["id"], queued["id"]]
        assert await _list(client, token, status="succeeded") == ([], None)

    async def test_filter_by_name(self, client: httpx.AsyncClient, token: str) -> None:
        echo = await submit(client, token, "echo", {"message": "hi"})
        sleep = await submit(client, token, "sleep", {"seconds": 0})
        health = await submit(client, token, "health_check", {})
        items, _ = await _list(client, token, name="sleep")
        assert _ids(items) == [sleep["id"]]
        items, _ = await _list(client, token, name=["echo", "health_check"])
        assert _ids(items) == [health["id"], echo["id"]]
        assert await _list(client, token, name="no_such_type") == ([], None)

    async def test_filter_by_labels_matches_all_given(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        prod_a = await submit(
            client, token, "echo", {"message": "1"}, {"labels": {"env": "prod", "team": "a"}}
        )
        prod_b = await submit(
            client, token, "echo", {"message": "2"}, {"labels": {"env": "prod", "team": "b"}}
        )
        await submit(client, token, "echo", {"message": "3"}, {"labels": {"env": "dev"}})
        await submit(client, token, "echo", {"message": "4"})
        items, _ = await _list(client, token, label="env:prod")
        assert _ids(items) == [prod_b["id"], prod_a["id"]]
        items, _ = await _list(client, token, label=["env:prod", "team:a"])
        assert _ids(items) == [prod_a["id"]]
        assert await _list(client, token, label="env:staging") == ([], None)

    async def test_label_value_may_contain_a_colon(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(
            client, token, "echo", {"message": "hi"}, {"labels": {"url": "http://x"}}
        )
        items, _ = await _list(client, token, label="url:http://x")
        assert _ids(items) == [job["id"]]

    async def test_filter_by_creation_time(self, client: httpx.AsyncClient, token: str) -> None:
        first = await submit(client, token, "echo", {"message": "1"})
        second = await submit(client, token, "echo", {"message": "2"})
        third = await submit(client, token, "echo", {"message": "3"})
        items, _ = await _list(client, token, created_after=first["created_at"])
        assert _ids(items) == [third["id"], second["id"]]
        items, _ = await _list(client, token, created_before=third["created_at"])
        assert _ids(items) == [second["id"], first["id"]]
        items, _ = await _list(
            client,
            token,
            created_after=first["created_at"],
            created_before=third["created_at"],
        )
        assert _ids(items) == [second["id"]]

    async def test_filters_combine_with_pagination(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        wanted = []
        for i in range(6):
            labels = {"batch": "x"} if i % 2 == 0 else {"batch": "y"}
            job = await submit(client, token, "echo", {"message": str(i)}, {"labels": labels})
            if i % 2 == 0:
                wanted.append(job["id"])
        first, cursor = await _list(client, token, label="batch:x", limit=2)
        assert cursor is not None
        rest, cursor = await _list(client, token, label="batch:x", limit=2, cursor=cursor)
        assert cursor is None
        assert _ids(first) + _ids(rest) == wanted[::-1]

    @pytest.mark.parametrize("cursor", ["not-a-cursor", "!!!", "AAAA", "x" * 64])
    async def test_bad_cursor_is_422(
        self, client: httpx.AsyncClient, token: str, cursor: str
    ) -> None:
        response = await client.get("/jobs", params={"cursor": cursor}, headers=auth(token))
        assert_problem(response, 422, "invalid-cursor")

    async def test_overlong_cursor_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get("/jobs", params={"cursor": "A" * 65}, headers=auth(token))
        assert error_locations(response) == [["query", "cursor"]]

    @pytest.mark.parametrize("label", ["nocolon", ":value", ""])
    async def test_bad_label_format_is_422(
        self, client: httpx.AsyncClient, token: str, label: str
    ) -> None:
        response = await client.get("/jobs", params={"label": label}, headers=auth(token))
        assert error_locations(response) == [["query", "label"]]

    @pytest.mark.parametrize(
        ("params", "loc"),
        [
            ({"limit": 201}, ["query", "limit"]),
            ({"limit": 0}, ["query", "limit"]),
            ({"limit": "many"}, ["query", "limit"]),
            ({"status": "done"}, ["query", "status", 0]),
            ({"created_after": "yesterday"}, ["query", "created_after"]),
            ({"created_before": "2024-13-01"}, ["query", "created_before"]),
        ],
    )
    async def test_bad_filter_is_422(
        self, client: httpx.AsyncClient, token: str, params: dict[str, Any], loc: list[Any]
    ) -> None:
        response = await client.get("/jobs", params=params, headers=auth(token))
        assert error_locations(response) == [loc]

    async def test_limit_of_200_is_allowed(self, client: httpx.AsyncClient, token: str) -> None:
        await submit(client, token, "echo", {"message": "hi"})
        items, cursor = await _list(client, token, limit=200)
        assert len(items) == 1
        assert cursor is None
