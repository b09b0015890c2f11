"""`POST /jobs/{name}/batch` (all or nothing) and `Idempotency-Key` on single submits."""

from __future__ import annotations

import asyncio

import httpx
from arq.worker import Worker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.models import Job
from tests.conftest import ClientFactory
from tests.factories import auth, wait_for_status


async def _count_jobs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(Job))).scalar_one())


class TestBatch:
    async def test_no_key_is_401(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/jobs/echo/batch", json={"jobs": [{"args": {"message": "a"}}]}
        )
        assert response.status_code == 401

    async def test_unknown_type_is_404(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(
            "/jobs/nope/batch", json={"jobs": [{"args": {}}]}, headers=auth(token)
        )
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/unknown-job-type"

    async def test_accepts_and_runs_every_job(
        self,
        client: httpx.AsyncClient,
        token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        items = [
            {"args": {"message": f"m{i}"}, "options": {"labels": {"i": str(i)}}} for i in range(50)
        ]
        response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 202
        jobs = response.json()["jobs"]
        assert [job["args"]["message"] for job in jobs] == [f"m{i}" for i in range(50)]
        assert len({job["id"] for job in jobs}) == 50
        done = await asyncio.gather(
            *(wait_for_status(client, token, job["id"], "succeeded") for job in jobs)
        )
        assert [job["result"] for job in done] == [{"message": f"m{i}"} for i in range(50)]
        assert await _count_jobs(sessionmaker) == 50

    async def test_one_invalid_item_rejects_the_whole_batch(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        items = [{"args": {"message": "ok"}}, {"args": {"message": "x", "repeat": 0}}]
        response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 422
        locations = [error["loc"] for error in response.json()["errors"]]
        assert ["body", "jobs", 1, "args", "repeat"] in locations
        assert await _count_jobs(sessionmaker) == 0

    async def test_more_than_1000_jobs_is_413(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        items = [{"args": {"message": ""}}] * 1001
        response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 413
        assert response.json()["type"] == "/problems/payload-too-large"
        assert await _count_jobs(sessionmaker) == 0

    async def test_empty_batch_is_422(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post("/jobs/echo/batch", json={"jobs": []}, headers=auth(token))
        assert response.status_code == 422

    async def test_redis_down_stores_nothing(
        self,
        make_client: ClientFactory,
        token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        down = await make_client(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.5)
        items = [{"args": {"message": "a"}}] * 10
        response = await down.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 503
        assert await _count_jobs(sessionmaker) == 0


class TestIdempotencyKey:
    async def test_same_key_and_args_return_the_original_job(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers = {**auth(token), "Idempotency-Key": "order-42"}
        body = {"args": {"message": "once"}}
        first = await client.post("/jobs/echo", json=body, headers=headers)
        second = await client.post("/jobs/echo", json=body, headers=headers)
        assert first.status_code == 202
        assert second.status_code == 200
        assert second.json()["id"] == first.json()["id"]
        assert second.json()["idempotency_key"] == "order-42"
        assert second.headers["location"] == first.headers["location"]
        assert await _count_jobs(sessionmaker) == 1

    async def test_same_key_other_args_is_409(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers = {**auth(token), "Idempotency-Key": "order-43"}
        await client.post("/jobs/echo", json={"args": {"message": "a"}}, headers=headers)
        response = await client.post("/jobs/echo", json={"args": {"message": "b"}}, headers=headers)
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/idempotency-conflict"
        assert await _count_jobs(sessionmaker) == 1

    async def test_same_key_other_type_is_409_naming_the_first_type(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers = {**auth(token), "Idempotency-Key": "order-44"}
        await client.post("/jobs/echo", json={"args": {"message": "a"}}, headers=headers)
        response = await client.post(
            "/jobs/flaky", json={"args": {"fail_times": 0}}, headers=headers
        )
        assert response.status_code == 409
        problem = response.json()
        assert problem["type"] == "/problems/idempotency-conflict"
        assert "another type ('echo', not 'flaky')" in problem["detail"]
        assert await _count_jobs(sessionmaker) == 1

    async def test_another_tenants_key_on_another_type_is_no_conflict(
        self, client: httpx.AsyncClient, token: str, other_token: str
    ) -> None:
        theirs = await client.post(
            "/jobs/flaky",
            json={"args": {"fail_times": 0}},
            headers={**auth(other_token), "Idempotency-Key": "shared-key"},
        )
        mine = await client.post(
            "/jobs/echo",
            json={"args": {"message": "a"}},
            headers={**auth(token), "Idempotency-Key": "shared-key"},
        )
        assert theirs.status_code == mine.status_code == 202
        assert "flaky" not in mine.text

    async def test_keys_are_per_tenant(
        self,
        client: httpx.AsyncClient,
        token: str,
        other_token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        body = {"args": {"message": "a"}}
        mine = await client.post(
            "/jobs/echo", json=body, headers={**auth(token), "Idempotency-Key": "k"}
        )
        theirs = await client.post(
            "/jobs/echo", json=body, headers={**auth(other_token), "Idempotency-Key": "k"}
        )
        assert mine.status_code == theirs.status_code == 202
        assert mine.json()["id"] != theirs.json()["id"]

    async def test_concurrent_duplicates_make_one_job(
        self, client: httpx.AsyncClient, token: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        headers = {**auth(token), "Idempotency-Key": "race"}
        body = {"args": {"message": "race"}}
        responses = await asyncio.gather(
            *(client.post("/jobs/echo", json=body, headers=headers) for _ in range(10))
        )
        assert sorted(r.status_code for r in responses) == [200] * 9 + [202]
        assert len({r.json()["id"] for r in responses}) == 1
        assert await _count_jobs(sessionmaker) == 1
