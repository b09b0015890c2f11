"""Fairness between tenants: fair queuing on submit, concurrency quotas in the workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.enqueue import (
    FAIR_SHARE_MAX_LEAD_MS,
    PRIORITY_SPAN_MS,
    Delivery,
    enqueue,
    promote_due,
)
from shared.keys import in_progress_key, queue_key, vclock_key
from shared.models import Job
from shared.settings import Settings
from tests.conftest import WorkerFactory
from tests.factories import (
    auth,
    make_tenant,
    max_overlap,
    set_tenant_limits,
    submit,
    wait_for_status,
)
from tests.polling import POLL_INTERVAL_SECONDS
from worker.quota import take_slot

pytestmark = pytest.mark.slow

QUEUE = queue_key("default")


async def _submit_batches(
    client: httpx.AsyncClient, token: str, *, batches: int, size: int = 1000
) -> None:
    for batch in range(batches):
        items = [{"args": {"message": f"{batch}-{i}"}} for i in range(size)]
        response = await client.post("/jobs/echo/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 202, response.text


async def _started_before(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, job_id: str
) -> tuple[int, int]:
    """How many of the tenant's jobs started before that job did, and in the job's lifetime."""
    async with sessionmaker() as session:
        job = await session.get(Job, uuid.UUID(job_id))
        assert job is not None and job.started_at is not None
        of_tenant = select(func.count()).where(
            Job.tenant_id == uuid.UUID(tenant_id), Job.started_at < job.started_at
        )
        before = (await session.execute(of_tenant)).scalar_one()
        meanwhile = (
            await session.execute(of_tenant.where(Job.started_at >= job.created_at))
        ).scalar_one()
    return before, meanwhile


class TestFairQueuing:
    @pytest.mark.timeout(90)
    async def test_a_single_job_does_not_wait_behind_another_tenants_5000(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        bulk_id, bulk = await make_tenant(sessionmaker, "bulk")
        _, single = await make_tenant(sessionmaker, "single")
        await _submit_batches(client, bulk, batches=5)
        mine = await submit(client, single, "echo", {"message": "me too"})
        await start_worker(settings=settings.model_copy(update={"worker_max_jobs": 10}))
        await wait_for_status(client, single, mine["id"], "succeeded", timeout=30)
        ahead, _ = await _started_before(sessionmaker, bulk_id, mine["id"])
        # First in, first out would put it behind all 5,000.
        assert ahead < 100, f"{ahead} of the other tenant's jobs started first"

    @pytest.mark.timeout(90)
    async def test_a_single_job_starts_within_a_few_rounds_while_a_backlog_drains(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        bulk_id, bulk = await make_tenant(sessionmaker, "bulk")
        _, single = await make_tenant(sessionmaker, "single")
        await start_worker(settings=settings.model_copy(update={"worker_max_jobs": 10}))
        await _submit_batches(client, bulk, batches=3)
        mine = await submit(client, single, "echo", {"message": "me too"})
        await wait_for_status(client, single, mine["id"], "succeeded", timeout=30)
        _, meanwhile = await _started_before(sessionmaker, bulk_id, mine["id"])
        # The rounds of 10 the worker had read ahead, and the few whose fair start had come.
        bound = (settings.worker_read_ahead_rounds + 1) * 10
        assert meanwhile < bound, f"{meanwhile} of the other tenant's jobs started while it waited"

    async def test_delaying_jobs_does_not_get_around_fairness(
        self, arq_redis: ArqRedis, redis: Redis
    ) -> None:
        bulk, single = uuid.uuid4(), uuid.uuid4()
        soon = datetime.now(UTC) + timedelta(milliseconds=100)
        await enqueue(arq_redis, [_delivery(bulk, run_at=soon) for _ in range(100)])
        moved = 0

        async def promote() -> bool:
            nonlocal moved
            moved += await promote_due(arq_redis)
            return moved == 100

        deadline = time.monotonic() + 5
        while not await promote():
            assert time.monotonic() < deadline, "the delayed jobs were never promoted"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        mine = _delivery(single)
        await enqueue(arq_redis, [mine])
        order = [member.decode() for member in await redis.zrange(QUEUE, 0, -1)]
        assert order.index(str(mine.job_id)) <= 2

    async def test_priority_still_wins_and_every_score_is_due(
        self, arq_redis: ArqRedis, redis: Redis
    ) -> None:
        bulk, single = uuid.uuid4(), uuid.uuid4()
        # A tenant whose clock ran far ahead (its lead is capped) ...
        await redis.set(vclock_key(str(bulk)), str(_now_ms() + 10 * PRIORITY_SPAN_MS))
        critical = _delivery(bulk, priority="critical")
        low = _delivery(bulk, priority="low")
        await enqueue(arq_redis, [critical, low])
        # ... still has its critical job before another tenant's default one, and its low job
        # after; all of them due now, or ARQ would not start them.
        default = _delivery(single)
        await enqueue(arq_redis, [default])
        scores = dict(await redis.zrange(QUEUE, 0, -1, withscores=True))
        order = [member.decode() for member in await redis.zrange(QUEUE, 0, -1)]
        assert order == [str(critical.job_id), str(default.job_id), str(low.job_id)]
        assert max(scores.values()) <= _now_ms() - PRIORITY_SPAN_MS + FAIR_SHARE_MAX_LEAD_MS


def _now_ms() -> int:
    return int(time.time() * 1000)


def _delivery(
    tenant_id: uuid.UUID, *, priority: Any = "default", run_at: datetime | None = None
) -> Delivery:
    return Delivery(
        job_id=uuid.uuid4(),
        tenant_id=tenant_id,
        name="echo",
        queue="default",
        priority=priority,
        run_at=run_at,
    )


class TestConcurrencyQuota:
    @pytest.mark.timeout(60)
    async def test_never_more_than_the_quota_run_at_once_and_all_finish(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        _, other = await make_tenant(sessionmaker, "other")
        await set_tenant_limits(sessionmaker, tenant_id, max_concurrent_jobs=2)
        items = [{"args": {"seconds": 0.5}} for _ in range(10)]
        response = await client.post("/jobs/sleep/batch", json={"jobs": items}, headers=auth(token))
        assert response.status_code == 202, response.text
        theirs = [await submit(client, other, "sleep", {"seconds": 0.5}) for _ in range(3)]
        await start_worker(
            settings=settings.model_copy(
                update={"worker_max_jobs": 10, "worker_quota_defer_seconds": 0.1}
            )
        )
        samples: list[int] = []

        async def sample() -> bool:
            running = await client.get(
                "/jobs", params={"status": "running", "limit": 200}, headers=auth(token)
            )
            samples.append(len(running.json()["items"]))
            finished = await client.get(
                "/jobs", params={"status": "succeeded", "limit": 200}, headers=auth(token)
            )
            return len(finished.json()["items"]) == 10

        deadline = time.monotonic() + 30
        while not await sample():
            assert time.monotonic() < deadline, f"not all finished; running samples {samples}"
        assert max(samples) <= 2, samples
        mine = [
            await wait_for_status(client, token, job["id"], "succeeded")
            for job in response.json()["jobs"]
        ]
        assert max_overlap(mine) == 2
        # Being put back is not an attempt.
        assert {job["attempts"] for job in mine} == {1}
        # The quota is the tenant's own: the other tenant's three ran side by side.
        done = [await wait_for_status(client, other, job["id"], "succeeded") for job in theirs]
        assert max_overlap(done) == 3

    async def test_a_slot_of_a_dead_attempt_is_taken_over(
        self, arq_redis: ArqRedis, redis: Redis
    ) -> None:
        tenant = uuid.uuid4()
        alive, dead, newcomer = (str(uuid.uuid4()) for _ in range(3))
        await redis.set(in_progress_key(alive), "1")
        assert await take_slot(arq_redis, tenant_id=tenant, job_id=alive, limit=2)
        assert await take_slot(arq_redis, tenant_id=tenant, job_id=dead, limit=2)
        await redis.set(in_progress_key(dead), "1")
        assert not await take_slot(arq_redis, tenant_id=tenant, job_id=newcomer, limit=2)
        # Its worker died: the lease (ARQ's in-progress key) lapses, and so does the slot.
        await redis.delete(in_progress_key(dead))
        assert await take_slot(arq_redis, tenant_id=tenant, job_id=newcomer, limit=2)
        # A re-delivered job takes its own slot again.
        assert await take_slot(arq_redis, tenant_id=tenant, job_id=alive, limit=2)
