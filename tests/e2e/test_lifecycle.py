"""Cancel, re-run, delay and priorities, end to end through the API and real ARQ workers."""

from __future__ import annotations

import time
import uuid

import httpx
from arq.connections import ArqRedis
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs import control
from shared.tenants.apikeys import Scope
from tests.conftest import WorkerFactory
from tests.factories import auth, make_api_key, make_tenant, submit, wait_for_status
from tests.polling import poll_job


class TestCancel:
    async def test_needs_the_cancel_scope(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"})
        reader = await make_api_key(sessionmaker, tenant_id, Scope.READ, Scope.SUBMIT)
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(reader))
        assert response.status_code == 403

    async def test_other_tenants_job_is_not_found(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        _, other = await make_tenant(sessionmaker, "other")
        job = await submit(client, token, "echo", {"message": "x"})
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(other))
        assert response.status_code == 404
        assert response.json()["type"] == "/problems/job-not-found"

    async def test_queued_job_is_cancelled_and_never_runs(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_worker: WorkerFactory,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"})
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert response.json()["expires_at"] is not None
        # A later job runs, so the worker has been through the queue; the cancelled one has not.
        await start_worker()
        later = await submit(client, token, "echo", {"message": "y"})
        await wait_for_status(client, token, later["id"], "succeeded")
        read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert read.json()["status"] == "cancelled"
        assert read.json()["attempts"] == 0

    async def test_scheduled_job_is_cancelled_and_never_runs(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"}, {"delay_seconds": 0.5})
        assert job["status"] == "scheduled"
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 200
        control_job = await submit(client, token, "echo", {"message": "y"}, {"delay_seconds": 0.6})
        await wait_for_status(client, token, control_job["id"], "succeeded")
        read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
        assert read.json()["status"] == "cancelled"
        assert read.json()["started_at"] is None

    async def test_running_sleep_is_aborted_promptly(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "sleep", {"seconds": 30, "steps": 30})
        await poll_job(client, token, job["id"], lambda j: j["status"] == "running")
        started = time.monotonic()
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 202
        assert response.json()["status"] == "running"
        done = await wait_for_status(client, token, job["id"], "cancelled", "succeeded", timeout=5)
        assert done["status"] == "cancelled"
        assert time.monotonic() - started < 3
        assert done["error"]["type"] == "cancelled"

    async def test_terminal_job_conflicts(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"})
        await wait_for_status(client, token, job["id"], "succeeded")
        response = await client.post(f"/jobs/{job['id']}/cancel", headers=auth(token))
        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/job-state-conflict"


class TestRetry:
    async def test_failed_job_is_rerun_as_a_linked_new_job(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(
            client, token, "flaky", {"fail_times": 1, "permanent": True}, {"labels": {"a": "b"}}
        )
        await wait_for_status(client, token, job["id"], "failed")
        response = await client.post(f"/jobs/{job['id']}/retry", headers=auth(token))
        assert response.status_code == 201
        new = response.json()
        assert response.headers["location"] == f"/jobs/{new['id']}"
        assert new["id"] != job["id"]
        assert new["retry_of"] == job["id"]
        assert new["args"] == job["args"] and new["labels"] == {"a": "b"}
        old = (await client.get(f"/jobs/{job['id']}", headers=auth(token))).json()
        assert old["retried_by"] == new["id"]
        # The re-run is attempt 1 of its own, so flaky (fail_times=1) fails it again: it ran.
        rerun = await wait_for_status(client, token, new["id"], "failed")
        assert rerun["attempts"] == 1

    async def test_only_failed_or_cancelled_jobs_and_only_once(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"})
        await wait_for_status(client, token, job["id"], "succeeded")
        response = await client.post(f"/jobs/{job['id']}/retry", headers=auth(token))
        assert response.status_code == 409

        waiting = await submit(client, token, "echo", {"message": "y"}, {"delay_seconds": 60})
        await client.post(f"/jobs/{waiting['id']}/cancel", headers=auth(token))
        first = await client.post(f"/jobs/{waiting['id']}/retry", headers=auth(token))
        assert first.status_code == 201
        second = await client.post(f"/jobs/{waiting['id']}/retry", headers=auth(token))
        assert second.status_code == 409

    async def test_other_tenants_job_is_not_found(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        _, other = await make_tenant(sessionmaker, "other")
        job = await submit(client, token, "echo", {"message": "x"})
        response = await client.post(f"/jobs/{job['id']}/retry", headers=auth(other))
        assert response.status_code == 404


class TestDelay:
    async def test_delayed_job_runs_on_time(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "x"}, {"delay_seconds": 1})
        assert job["status"] == "scheduled"
        done = await wait_for_status(client, token, job["id"], "succeeded")
        started = done["started_at"].replace("Z", "+00:00")
        scheduled = done["scheduled_at"].replace("Z", "+00:00")
        assert started >= scheduled

    async def test_run_at_in_the_past_runs_now(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker: Worker,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(
            client, token, "echo", {"message": "x"}, {"run_at": "2020-01-01T00:00:00Z"}
        )
        assert job["status"] == "queued"
        await wait_for_status(client, token, job["id"], "succeeded")


class TestPriority:
    async def test_critical_job_starts_before_earlier_low_jobs(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_worker: WorkerFactory,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        lows = [
            await submit(client, token, "echo", {"message": f"low {i}"}, {"priority": "low"})
            for i in range(5)
        ]
        default = await submit(client, token, "echo", {"message": "default"})
        critical = await submit(
            client, token, "echo", {"message": "critical"}, {"priority": "critical"}
        )
        # One slot: jobs start strictly one after another, in the order the queue gives them.
        await start_worker(max_jobs=1)
        finished = [
            await wait_for_status(client, token, job["id"], "succeeded")
            for job in [*lows, default, critical]
        ]
        order = [job["id"] for job in sorted(finished, key=lambda job: job["started_at"])]
        assert order[0] == critical["id"]
        assert order[1] == default["id"]
        assert order[2:] == [job["id"] for job in lows]


class TestPurge:
    async def test_purges_only_the_tenants_waiting_jobs(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        _, other = await make_tenant(sessionmaker, "other")
        mine = [await submit(client, token, "echo", {"message": str(i)}) for i in range(3)]
        later = await submit(client, token, "echo", {"message": "l"}, {"delay_seconds": 60})
        theirs = await submit(client, other, "echo", {"message": "t"})
        async with sessionmaker() as session:
            count = await control.purge_waiting(session, arq_redis, tenant_id=uuid.UUID(tenant_id))
        assert count == 4
        for job in [*mine, later]:
            read = await client.get(f"/jobs/{job['id']}", headers=auth(token))
            assert read.json()["status"] == "cancelled"
        read = await client.get(f"/jobs/{theirs['id']}", headers=auth(other))
        assert read.json()["status"] == "queued"
