"""Concurrency keys at the API: the key on the job, `options.concurrency_key`, and the
strategies decided at submit (`cancel_newest`, `cancel_in_progress`); no worker runs here."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from types import CodeType
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.arg_paths import ArgPathError
from shared.contracts import REGISTRY
from shared.keys import ABORT_SET, queue_key
from shared.models import Job
from tests.conftest import ClientFactory
from tests.docs_examples import CONCURRENCY_KEYS
from tests.factories import auth, make_tenant, submit
from tests.gateway.problem_checks import assert_problem
from tests.keyed_jobs import KEYED_TYPES
from worker.testing import declared

KEY_OPTION = {"concurrency_key": "42"}


@pytest.fixture
async def keyed(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that knows the keyed test types (declared for this test only)."""
    with declared(*KEYED_TYPES):
        yield await make_client()


def _args(customer: str, seconds: float = 0.0) -> dict[str, Any]:
    return {"customer": {"id": customer}, "seconds": seconds}


async def _job(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}", headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refused(response: httpx.Response, loc: list[str | int]) -> None:
    body = assert_problem(response, 422, "option-refused")
    assert body["errors"] == [
        {
            "loc": loc,
            "msg": "job type 'echo' declares no concurrency limit, so it takes no key",
            "type": "option_refused",
        }
    ]


def _compiled(example: str) -> CodeType:
    # As a reader's module runs it: without this module's `from __future__ import annotations`.
    return compile(example, str(CONCURRENCY_KEYS.page), "exec", dont_inherit=True)


class TestTheDocsExample:
    async def test_declares_a_type_whose_jobs_carry_the_key_from_their_args(
        self, make_client: ClientFactory, token: str
    ) -> None:
        (example,) = CONCURRENCY_KEYS.blocks()
        try:
            exec(_compiled(example), {})  # noqa: S102 (our own docs)
            client = await make_client()
            job = await submit(client, token, "sync_account", {"customer": {"id": "42"}})
            catalogue = {entry["name"]: entry for entry in (await client.get("/job-types")).json()}
        finally:
            REGISTRY.unregister("sync_account")
        assert job["concurrency_key"] == "42"
        assert catalogue["sync_account"]["concurrency"] == {
            "key": "customer.id",
            "limit": 1,
            "strategy": "queue",
        }

    def test_a_key_that_is_not_a_field_fails_at_import(self) -> None:
        (example,) = CONCURRENCY_KEYS.blocks()
        mistyped = example.replace('key="customer.id"', 'key="customer.uid"')
        assert mistyped != example
        with pytest.raises(ArgPathError, match=r"SyncArgs has no field 'customer\.uid'"):
            exec(_compiled(mistyped), {})  # noqa: S102 (our own docs)
        assert "sync_account" not in REGISTRY


class TestTheKeyOption:
    async def test_a_type_without_a_limit_refuses_it_and_stores_nothing(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        body = {"args": {"message": "hi"}, "options": {"concurrency_key": "42"}}
        response = await client.post("/jobs/echo", json=body, headers=auth(token))
        _refused(response, ["body", "options", "concurrency_key"])
        listed = await client.get("/jobs", headers=auth(token))
        assert listed.json()["items"] == []

    async def test_a_batch_names_the_job_that_gave_it(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        jobs = [{"args": {"message": "a"}}, {"args": {"message": "b"}, "options": KEY_OPTION}]
        response = await client.post("/jobs/echo/batch", json={"jobs": jobs}, headers=auth(token))
        _refused(response, ["body", "jobs", 1, "options", "concurrency_key"])

    async def test_an_idempotent_submit_refuses_it_too(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        response = await client.post(
            "/jobs/echo",
            json={"args": {"message": "hi"}, "options": KEY_OPTION},
            headers={**auth(token), "Idempotency-Key": "k-1"},
        )
        _refused(response, ["body", "options", "concurrency_key"])

    async def test_a_workflow_step_refuses_it_too(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        step = {"type": "step", "job": "echo", "args": {"message": "x"}, "options": KEY_OPTION}
        response = await client.post("/workflows", json={"workflow": step}, headers=auth(token))
        body = assert_problem(response, 422, "invalid-workflow")
        assert [issue["loc"] for issue in body["errors"]] == [
            ["body", "workflow", "options", "concurrency_key"]
        ]

    async def test_an_empty_key_is_a_validation_error(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        body = {"args": _args("42"), "options": {"concurrency_key": ""}}
        response = await keyed.post("/jobs/keyed_queue", json=body, headers=auth(token))
        assert_problem(response, 422, "validation-error")


class TestTheKeyOnTheJob:
    async def test_read_from_the_args_and_shown_on_read_and_list(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(keyed, token, "keyed_queue", _args("42"))
        assert job["concurrency_key"] == "42"
        assert (await _job(keyed, token, job["id"]))["concurrency_key"] == "42"
        listed = await keyed.get("/jobs", headers=auth(token))
        assert [item["concurrency_key"] for item in listed.json()["items"]] == ["42"]

    async def test_the_submit_may_give_its_own(self, keyed: httpx.AsyncClient, token: str) -> None:
        job = await submit(keyed, token, "keyed_queue", _args("42"), {"concurrency_key": "vip"})
        assert job["concurrency_key"] == "vip"

    async def test_a_long_key_is_stored_as_its_digest(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        customer = "c" * 300
        job = await submit(keyed, token, "keyed_queue", _args(customer))
        assert job["concurrency_key"] == "sha256:" + hashlib.sha256(customer.encode()).hexdigest()

    async def test_a_type_without_a_limit_has_no_key(
        self, client: httpx.AsyncClient, token: str
    ) -> None:
        job = await submit(client, token, "echo", {"message": "hi"})
        assert job["concurrency_key"] is None

    async def test_the_catalogue_shows_the_declaration(self, keyed: httpx.AsyncClient) -> None:
        catalogue = {entry["name"]: entry for entry in (await keyed.get("/job-types")).json()}
        assert catalogue["keyed_latest"]["concurrency"] == {
            "key": "customer.id",
            "limit": 1,
            "strategy": "cancel_in_progress",
        }
        assert catalogue["echo"]["concurrency"] is None

    async def test_the_waiting_gauge_reads_zero_for_each_keyed_type(
        self, keyed: httpx.AsyncClient
    ) -> None:
        metrics = (await keyed.get("/metrics")).text
        for job_type in KEYED_TYPES:
            assert f'jobgate_concurrency_waiting{{job_type="{job_type.name}"}} 0.0' in metrics


class TestCancelNewest:
    async def test_a_job_that_finds_its_key_at_the_limit_is_cancelled_at_submit(
        self, keyed: httpx.AsyncClient, token: str, redis: Redis
    ) -> None:
        first = await submit(keyed, token, "keyed_once", _args("42"))
        second = await submit(keyed, token, "keyed_once", _args("42"))
        other_key = await submit(keyed, token, "keyed_once", _args("7"))

        assert first["status"] == other_key["status"] == "queued"
        assert second["status"] == "cancelled"
        assert second["finished_at"] is not None
        assert second["error"] == {
            "type": "cancelled",
            "message": "cancelled at submit: concurrency key '42' already has 1 unfinished"
            " job(s), its limit is 1 (cancel_newest)",
        }
        assert await _job(keyed, token, second["id"]) == second | {"webhook": None}
        assert await redis.zscore(queue_key("default"), second["id"]) is None
        assert await redis.zscore(queue_key("default"), first["id"]) is not None

    async def test_concurrent_submits_of_one_key_let_exactly_one_through(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        responses = await asyncio.gather(
            *(
                keyed.post("/jobs/keyed_once", json={"args": _args("42")}, headers=auth(token))
                for _ in range(8)
            )
        )
        statuses = sorted(response.json()["status"] for response in responses)
        assert statuses == ["cancelled"] * 7 + ["queued"]

    async def test_keys_are_the_tenants_own(
        self,
        keyed: httpx.AsyncClient,
        token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        _, other = await make_tenant(sessionmaker, "globex")
        mine = await submit(keyed, token, "keyed_once", _args("42"))
        theirs = await submit(keyed, other, "keyed_once", _args("42"))
        assert mine["status"] == theirs["status"] == "queued"

    async def test_a_batch_counts_its_own_jobs(self, keyed: httpx.AsyncClient, token: str) -> None:
        jobs = [{"args": _args("42")}, {"args": _args("42")}, {"args": _args("7")}]
        response = await keyed.post(
            "/jobs/keyed_once/batch", json={"jobs": jobs}, headers=auth(token)
        )
        assert response.status_code == 202, response.text
        assert [job["status"] for job in response.json()["jobs"]] == [
            "queued",
            "cancelled",
            "queued",
        ]


class TestCancelInProgress:
    async def test_a_new_job_cancels_the_older_waiting_one(
        self, keyed: httpx.AsyncClient, token: str, redis: Redis
    ) -> None:
        older = await submit(keyed, token, "keyed_latest", _args("42"))
        newer = await submit(keyed, token, "keyed_latest", _args("42"))
        other_key = await submit(keyed, token, "keyed_latest", _args("7"))

        assert newer["status"] == "queued"
        superseded = await _job(keyed, token, older["id"])
        assert superseded["status"] == "cancelled"
        assert superseded["error"] == {
            "type": "cancelled",
            "message": f"superseded by job {newer['id']} with the same concurrency key '42'"
            " (cancel_in_progress)",
        }
        assert (await _job(keyed, token, other_key["id"]))["status"] == "queued"
        assert await redis.zscore(queue_key("default"), older["id"]) is None

    async def test_in_a_batch_the_last_job_of_a_key_wins(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        jobs = [{"args": _args("42")}, {"args": _args("42")}]
        response = await keyed.post(
            "/jobs/keyed_latest/batch", json={"jobs": jobs}, headers=auth(token)
        )
        assert response.status_code == 202, response.text
        first, last = response.json()["jobs"]
        assert (first["status"], last["status"]) == ("cancelled", "queued")
        assert (await _job(keyed, token, first["id"]))["status"] == "cancelled"

    async def test_an_idempotent_replay_cancels_nothing(
        self, keyed: httpx.AsyncClient, token: str
    ) -> None:
        headers = {**auth(token), "Idempotency-Key": "once"}
        body = {"args": _args("42")}
        first = await keyed.post("/jobs/keyed_latest", json=body, headers=headers)
        replay = await keyed.post("/jobs/keyed_latest", json=body, headers=headers)
        assert (first.status_code, replay.status_code) == (202, 200)
        assert (await _job(keyed, token, first.json()["id"]))["status"] == "queued"

    async def test_a_running_job_is_aborted_and_asked_again_until_its_worker_hears(
        self,
        keyed: httpx.AsyncClient,
        token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
    ) -> None:
        older = await submit(keyed, token, "keyed_latest", _args("42"))
        async with sessionmaker() as session:  # a worker claimed it
            await session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(older["id"]))
                .values(status="running", attempts=1, started_at=func.now())
            )
            await session.commit()
        await submit(keyed, token, "keyed_latest", _args("42"))
        assert (await _job(keyed, token, older["id"]))["status"] == "running"  # until it stops
        assert await redis.zscore(ABORT_SET, older["id"]) is not None

        await redis.zrem(ABORT_SET, older["id"])  # the abort never reached Redis
        await submit(keyed, token, "keyed_latest", _args("42"))
        assert await redis.zscore(ABORT_SET, older["id"]) is not None
