"""`options.queue`: a submit picks one of the queues its job type may run on; any other is a 422
(`queue-not-allowed`) before anything is charged or stored. Every path that creates a job asks
`JobType.queue_for`: single, idempotent and batch submits, workflows, re-runs, Python.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.openapi import render_openapi
from shared.errors import QueueNotAllowed
from shared.keys import queue_key
from shared.models import Job
from shared.python_api import Jobgate
from shared.settings import Settings
from tests.choice_jobs import UPSTREAM_CALL
from tests.conftest import ClientFactory
from tests.docs_examples import QUEUE_NOT_ALLOWED
from tests.factories import auth, submit
from tests.gateway.problem_checks import assert_problem
from worker.testing import declared

NOT_ALLOWED = "Jobs of type 'upstream_call' may run on 'default', 'bulk', not on 'email'."


@pytest.fixture
def upstream_call() -> Iterator[None]:
    """`upstream_call` (queues `default` and `bulk`) registered for the test."""
    with declared(UPSTREAM_CALL):
        yield


@pytest.fixture
async def client(upstream_call: None, make_client: ClientFactory) -> httpx.AsyncClient:
    """The gateway, built once `upstream_call` is registered (its routes come from the registry)."""
    return await make_client()


async def _stored(sessionmaker: async_sessionmaker[AsyncSession], redis: Redis) -> int:
    """Jobs in PostgreSQL, and deliveries on the type's two queues in Redis."""
    async with sessionmaker() as session:
        rows: int = (await session.execute(select(func.count()).select_from(Job))).scalar_one()
    queued: list[int] = [await redis.zcard(queue_key(queue)) for queue in UPSTREAM_CALL.queues]
    return rows + sum(queued)


def _assert_refused(response: httpx.Response, *locs: list[str | int]) -> dict[str, Any]:
    body = assert_problem(response, 422, "queue-not-allowed")
    assert [issue["loc"] for issue in body["errors"]] == list(locs)
    for issue in body["errors"]:
        assert issue == {"loc": issue["loc"], "msg": NOT_ALLOWED, "type": "queue_not_allowed"}
    return body


class TestSubmit:
    async def test_no_key_is_401_before_the_queue_is_judged(
        self, client: httpx.AsyncClient
    ) -> None:
        body = {"args": {}, "options": {"queue": "email"}}
        response = await client.post("/jobs/upstream_call", json=body)
        assert_problem(response, 401, "unauthenticated")

    async def test_without_a_queue_the_job_runs_on_the_types_queue(
        self, client: httpx.AsyncClient, token: str, redis: Redis
    ) -> None:
        job = await submit(client, token, "upstream_call", {})
        assert job["queue"] == "default"
        assert await redis.zcard(queue_key("default")) == 1

    @pytest.mark.parametrize("queue", ["default", "bulk"])
    async def test_an_allowed_queue_is_where_the_job_is_stored_and_delivered(
        self, client: httpx.AsyncClient, token: str, redis: Redis, queue: str
    ) -> None:
        job = await submit(client, token, "upstream_call", {}, {"queue": queue})
        assert job["queue"] == queue
        read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert read.json()["queue"] == queue
        assert await redis.zcard(queue_key(queue)) == 1

    @pytest.mark.parametrize("idempotency_key", [None, "order-42"])
    async def test_another_queue_is_422_and_stores_nothing(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        token: str,
        idempotency_key: str | None,
    ) -> None:
        headers = auth(token) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
        sent = {"args": {}, "options": {"queue": "email"}}
        response = await client.post("/jobs/upstream_call", json=sent, headers=headers)
        problem = _assert_refused(response, ["body", "options", "queue"])
        assert problem["detail"] == NOT_ALLOWED
        assert await _stored(sessionmaker, redis) == 0
        assert await redis.zcard(queue_key("email")) == 0

    async def test_the_answer_is_the_one_docs_flow_control_shows(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        (documented,) = QUEUE_NOT_ALLOWED.blocks()  # for its `resize` type
        body = {"args": {}, "options": {"queue": "email"}}
        response = await client.post("/jobs/upstream_call", json=body, headers=auth(token))
        assert response.json() == json.loads(documented.replace("resize", "upstream_call"))

    async def test_a_type_of_one_queue_allows_that_one_only(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        body = {"args": {"message": "hi"}, "options": {"queue": "bulk"}}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        problem = assert_problem(response, 422, "queue-not-allowed")
        assert problem["detail"] == "Jobs of type 'echo' may run on 'default', not on 'bulk'."
        assert (await submit(client, token, "echo", {"message": "hi"}, {"queue": "default"}))[
            "queue"
        ] == "default"

    async def test_a_batch_names_each_refused_job_and_stores_none(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        token: str,
    ) -> None:
        jobs = [
            {"args": {}, "options": {"queue": "bulk"}},
            {"args": {}, "options": {"queue": "email"}},
            {"args": {}},
            {"args": {}, "options": {"queue": "email"}},
        ]
        response = await client.post(
            "/jobs/upstream_call/batch", json={"jobs": jobs}, headers=auth(token)
        )
        body = _assert_refused(
            response,
            ["body", "jobs", 1, "options", "queue"],
            ["body", "jobs", 3, "options", "queue"],
        )
        assert body["detail"] == "Jobs name queues their type may not run on; see `errors`."
        assert await _stored(sessionmaker, redis) == 0

    async def test_a_batch_may_spread_its_jobs_over_the_types_queues(
        self, client: httpx.AsyncClient, token: str, redis: Redis
    ) -> None:
        jobs = [{"args": {}, "options": {"queue": "bulk"}}, {"args": {}}]
        response = await client.post(
            "/jobs/upstream_call/batch", json={"jobs": jobs}, headers=auth(token)
        )
        assert response.status_code == 202, response.text
        assert [job["queue"] for job in response.json()["jobs"]] == ["bulk", "default"]
        assert [await redis.zcard(queue_key(queue)) for queue in ("bulk", "default")] == [1, 1]


class TestSchema:
    def test_the_types_options_offer_its_queues_and_the_catalogue_lists_them(
        self, upstream_call: None
    ) -> None:
        schemas = json.loads(render_openapi())["components"]["schemas"]
        queue = schemas["UpstreamCallOptions"]["properties"]["queue"]
        assert queue["anyOf"][0] == {"type": "string", "enum": ["default", "bulk"]}
        assert "queue-not-allowed" in queue["description"]

    async def test_get_job_types_lists_the_queues(self, client: httpx.AsyncClient) -> None:
        (entry,) = [
            entry
            for entry in (await client.get("/job-types")).json()
            if entry["name"] == "upstream_call"
        ]
        assert (entry["queue"], entry["queues"]) == ("default", ["default", "bulk"])


class TestWorkflowsAndReRuns:
    async def test_a_workflow_step_is_checked_like_a_submit(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        token: str,
    ) -> None:
        step = {"type": "step", "job": "upstream_call"}
        workflow: dict[str, Any] = {
            "type": "chain",
            "steps": [
                {**step, "options": {"queue": "bulk"}},
                {**step, "options": {"queue": "email"}},
            ],
        }
        response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
        body = assert_problem(response, 422, "invalid-workflow")
        assert body["errors"] == [
            {
                "loc": ["body", "workflow", "steps", 1, "options", "queue"],
                "msg": NOT_ALLOWED,
                "type": "queue_not_allowed",
            }
        ]
        assert await _stored(sessionmaker, redis) == 0

        workflow["steps"] = workflow["steps"][:1]
        response = await client.post("/workflows", json={"workflow": workflow}, headers=auth(token))
        assert response.status_code == 202, response.text
        assert await redis.zcard(queue_key("bulk")) == 1

    async def test_a_re_run_keeps_the_queue_its_job_ran_on(
        self, client: httpx.AsyncClient, token: str, redis: Redis
    ) -> None:
        job = await submit(client, token, "upstream_call", {}, {"queue": "bulk"})
        cancelled = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert cancelled.json()["status"] == "cancelled"
        rerun = await client.post(f"/jobs/{job['id']}/retry", headers=auth(token))
        assert rerun.status_code == 201, rerun.text
        assert rerun.json()["queue"] == "bulk"
        assert await redis.zcard(queue_key("bulk")) == 1


class TestPython:
    @pytest.fixture
    async def jobgate(self, settings: Settings, token: str) -> AsyncIterator[Jobgate]:
        async with Jobgate(settings, tenant="acme") as jobgate:
            yield jobgate

    async def test_queue_is_an_option_like_the_others(
        self,
        jobgate: Jobgate,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
    ) -> None:
        with pytest.raises(QueueNotAllowed, match="not on 'email'"):
            await jobgate.submit(UPSTREAM_CALL, {}, queue="email")
        assert await _stored(sessionmaker, redis) == 0
        handle = await jobgate.submit(UPSTREAM_CALL, {}, queue="bulk")
        assert (await handle.job()).queue == "bulk"
