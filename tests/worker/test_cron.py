"""Schedules: ticks run once across workers, runs are recorded jobs, the purge keeps retention."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ECHO
from shared.errors import TenantExists
from shared.jobs.schedules import SCHEDULES, SYSTEM_TENANT, Schedule, cron_expression
from shared.keys import job_key
from shared.models import Job
from shared.redis import create_redis
from shared.settings import Settings
from shared.tenants import tenancy
from shared.tenants.tenancy import ensure_tenant
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from worker.cron import TICK_RETRY_SECONDS, Slot, run_due, run_tick

TICK = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def _system_tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with sessionmaker() as session:
        return await ensure_tenant(session, name=SYSTEM_TENANT)


async def _jobs_of(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
) -> list[Job]:
    async with sessionmaker() as session:
        result = await session.execute(select(Job).where(Job.tenant_id == tenant_id))
        return list(result.scalars())


class TestScheduleDeclarations:
    def test_arq_style_fields_become_a_cron_expression(self) -> None:
        assert cron_expression(minute={0, 30}) == "0,30 * * * *"
        assert cron_expression(minute=5, hour=3, weekday={1, 5}) == "5 3 * * 1,5"
        with pytest.raises(ValueError, match="at least one"):
            cron_expression()

    def test_invalid_cron_and_args_are_refused(self) -> None:
        with pytest.raises(ValueError, match="5-field"):
            Schedule(name="bad", job_type=ECHO, cron="every minute", args={"message": "x"})
        with pytest.raises(ValueError):
            Schedule(name="bad", job_type=ECHO, cron="* * * * *", args={"nope": 1})

    def test_next_tick_is_strictly_after(self) -> None:
        every_five = Schedule(name="t", job_type=ECHO, cron="*/5 * * * *", args={"message": "x"})
        assert every_five.next_tick(TICK) == TICK + timedelta(minutes=5)
        assert every_five.next_tick(TICK - timedelta(seconds=1)) == TICK


class TestTicks:
    async def test_a_tick_runs_once_however_many_workers_reach_it(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
        settings: Settings,
    ) -> None:
        tenant_id = await _system_tenant(sessionmaker)
        schedule = Schedule(name="t", job_type=ECHO, cron="* * * * *", args={"message": "tick"})
        outcomes = await asyncio.gather(
            *(
                run_tick(
                    sessionmaker,
                    arq_redis,
                    settings=settings,
                    schedule=schedule,
                    tick=TICK,
                    tenant_id=tenant_id,
                )
                for _ in range(5)
            )
        )
        assert sorted(outcomes) == [False] * 4 + [True]
        jobs = await _jobs_of(sessionmaker, tenant_id)
        assert len(jobs) == 1
        assert jobs[0].labels == {"schedule": "t"}
        assert jobs[0].idempotency_key == f"cron:t:{TICK.isoformat()}"
        # The next tick is a new run.
        later = TICK + timedelta(minutes=1)
        assert await run_tick(
            sessionmaker,
            arq_redis,
            settings=settings,
            schedule=schedule,
            tick=later,
            tenant_id=tenant_id,
        )
        assert len(await _jobs_of(sessionmaker, tenant_id)) == 2

    async def test_scheduled_run_is_a_visible_job_with_its_result(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
        settings: Settings,
        worker: object,
    ) -> None:
        tenant_id = await _system_tenant(sessionmaker)
        schedule = Schedule(name="t", job_type=ECHO, cron="* * * * *", args={"message": "hi"})
        await run_tick(
            sessionmaker,
            arq_redis,
            settings=settings,
            schedule=schedule,
            tick=TICK,
            tenant_id=tenant_id,
        )
        (job,) = await _jobs_of(sessionmaker, tenant_id)
        # An operator reads the run with a key of the system tenant.
        async with sessionmaker() as session:
            key = await tenancy.create_api_key(session, tenant_id=tenant_id)
        done = await wait_for_status(client, key.token, str(job.id), "succeeded")
        assert done["result"] == {"message": "hi"}
        listed = await client.get("/jobs", params={"label": "schedule:t"}, headers=auth(key.token))
        assert [item["id"] for item in listed.json()["items"]] == [str(job.id)]


class TestRefusedHandOff:
    async def test_a_tick_redis_refuses_leaves_no_run_and_is_tried_again(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
        settings: Settings,
    ) -> None:
        tenant_id = await _system_tenant(sessionmaker)
        schedule = Schedule(name="t", job_type=ECHO, cron="* * * * *", args={"message": "x"})
        slots = {"t": Slot(tick=TICK, attempt_at=TICK)}
        down = create_redis(
            settings.model_copy(
                update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_seconds": 0.5}
            )
        )
        refused_at = TICK + timedelta(seconds=1)
        try:
            await run_due(
                sessionmaker, down, settings=settings, schedules=[schedule], slots=slots,
                tenant_id=tenant_id,
                now=refused_at,
            )  # fmt: skip
        finally:
            await down.aclose(close_connection_pool=True)
        assert await _jobs_of(sessionmaker, tenant_id) == []  # the key is free again
        retry_at = refused_at + timedelta(seconds=TICK_RETRY_SECONDS)
        assert slots["t"] == Slot(tick=TICK, attempt_at=retry_at)

        # Redis is back: not before the retry time, then the same tick runs, once.
        await run_due(
            sessionmaker, arq_redis, settings=settings, schedules=[schedule], slots=slots,
            tenant_id=tenant_id,
            now=refused_at,
        )  # fmt: skip
        assert await _jobs_of(sessionmaker, tenant_id) == []
        await run_due(
            sessionmaker, arq_redis, settings=settings, schedules=[schedule], slots=slots,
            tenant_id=tenant_id,
            now=retry_at,
        )  # fmt: skip
        (run,) = await _jobs_of(sessionmaker, tenant_id)
        assert run.idempotency_key == f"cron:t:{TICK.isoformat()}"
        assert await arq_redis.exists(job_key(str(run.id)))
        following = TICK + timedelta(minutes=1)
        assert slots["t"] == Slot(tick=following, attempt_at=following)

    async def test_a_tick_still_refused_when_the_next_one_comes_is_given_up(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        tenant_id = await _system_tenant(sessionmaker)
        schedule = Schedule(name="t", job_type=ECHO, cron="* * * * *", args={"message": "x"})
        slots = {"t": Slot(tick=TICK, attempt_at=TICK)}
        down = create_redis(
            settings.model_copy(
                update={"redis_url": "redis://127.0.0.1:1/0", "redis_timeout_seconds": 0.5}
            )
        )
        late = TICK + timedelta(minutes=1, seconds=1)
        try:
            await run_due(
                sessionmaker, down, settings=settings, schedules=[schedule], slots=slots,
                tenant_id=tenant_id,
                now=late,
            )  # fmt: skip
        finally:
            await down.aclose(close_connection_pool=True)
        assert await _jobs_of(sessionmaker, tenant_id) == []
        following = TICK + timedelta(minutes=2)
        assert slots["t"] == Slot(tick=following, attempt_at=following)


class TestPurgeExpired:
    async def test_purge_deletes_only_jobs_past_retention(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        arq_redis: ArqRedis,
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        await start_worker()
        await start_worker(queue="maintenance")
        _, token = await make_tenant(sessionmaker)
        old = await submit(client, token, "echo", {"message": "old"})
        fresh = await submit(client, token, "echo", {"message": "fresh"})
        for job in (old, fresh):
            await wait_for_status(client, token, job["id"], "succeeded")
        async with sessionmaker() as session:
            await session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(old["id"]))
                .values(expires_at=func.now() - timedelta(seconds=1))
            )
            await session.commit()

        tenant_id = await _system_tenant(sessionmaker)
        purge = next(item for item in SCHEDULES if item.name == "purge_expired")
        await run_tick(
            sessionmaker,
            arq_redis,
            settings=settings,
            schedule=purge,
            tick=TICK,
            tenant_id=tenant_id,
        )
        (run,) = await _jobs_of(sessionmaker, tenant_id)
        async with sessionmaker() as session:
            key = await tenancy.create_api_key(session, tenant_id=tenant_id)
        done = await wait_for_status(client, key.token, str(run.id), "succeeded")
        assert done["result"] == {"deleted": 1}
        gone = await client.get(f"/jobs/{old['id']}", headers=auth(token))
        assert gone.status_code == 404
        kept = await client.get(f"/jobs/{fresh['id']}", headers=auth(token))
        assert kept.status_code == 200

    async def test_tenants_cannot_submit_internal_types(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        response = await client.post("/jobs/purge_expired", json={"args": {}}, headers=auth(token))
        assert response.status_code == 404
        types = (await client.get("/job-types")).json()
        assert "purge_expired" not in {item["name"] for item in types}

    async def test_reserved_tenant_names_are_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker() as session:
            with pytest.raises(TenantExists, match="reserved"):
                await tenancy.create_tenant(session, name=SYSTEM_TENANT)


class TestSchedulesRoute:
    async def test_lists_builtin_schedules_with_next_run(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/schedules")
        assert response.status_code == 200
        by_name = {item["name"]: item for item in response.json()}
        assert {"purge_expired", "health_check"} <= set(by_name)
        purge = by_name["purge_expired"]
        assert purge["cron"] == "* * * * *" and purge["queue"] == "maintenance"
        next_run = datetime.fromisoformat(purge["next_run_at"])
        now = datetime.now(UTC)
        assert now < next_run <= now + timedelta(minutes=1)
        assert datetime.fromisoformat(by_name["health_check"]["next_run_at"]).minute % 5 == 0
