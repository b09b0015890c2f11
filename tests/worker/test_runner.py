"""The runner on a real ARQ worker: bad args, stale deliveries, duplicate enqueues.

Jobs are submitted through the HTTP API while no worker runs, their rows changed the way a
deploy, a cancel or a crash would, and only then is a worker started.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any

import httpx
from arq.connections import ArqRedis
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.jobs.enqueue import Delivery, enqueue
from shared.keys import job_key, queue_key
from shared.models import Job
from shared.settings import Settings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.polling import poll_until
from worker.context import JobContext


def _delivery(job: dict[str, Any], tenant_id: str) -> Delivery:
    return Delivery(
        job_id=uuid.UUID(job["id"]),
        tenant_id=uuid.UUID(tenant_id),
        name=job["name"],
        queue=job["queue"],
    )


async def _read(client: httpx.AsyncClient, token: str, job_id: str) -> httpx.Response:
    return await client.get(f"/jobs/{job_id}", headers=auth(token))


async def _drained(worker: Worker, redis: Redis, *, complete: int) -> None:
    """Wait until the worker has finished `complete` deliveries and the queue is empty."""
    # ARQ counts a job complete before it takes the id off the queue; its task ends after.
    await poll_until(
        lambda: (
            worker.jobs_complete >= complete and all(task.done() for task in worker.tasks.values())
        ),
        what="worker finished deliveries",
    )
    assert await redis.zcard(queue_key("default")) == 0
    assert worker.jobs_complete == complete
    assert worker.jobs_failed == worker.jobs_retried == 0


class TestInvalidArgs:
    async def test_args_no_longer_matching_the_contract_fail_the_job(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_worker: WorkerFactory,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})
        # As if a deploy removed a field between submit and run.
        async with sessionmaker() as session:
            await session.execute(
                update(Job)
                .where(Job.id == uuid.UUID(job["id"]))
                .values(args={"message": "hi", "volume": 11})
            )
            await session.commit()
        worker = await start_worker()

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "failed"
        assert done["attempts"] == 1  # not retried: retrying cannot fix the args
        assert done["error"]["type"] == "invalid_args"
        assert "volume" in done["error"]["message"]
        assert done["result"] is None

        # The worker keeps running and runs the next job fine.
        after = await submit(client, token, "echo", {"message": "next"})
        next_done = await wait_for_status(client, token, after["id"], "succeeded", "failed")
        assert next_done["result"] == {"message": "next"}
        assert worker.jobs_failed == 0


class TestStaleDelivery:
    """A delivery for a job that is gone or finished is skipped: at most one completion."""

    async def test_deleted_job_is_skipped(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        start_worker: WorkerFactory,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "gone"})
        async with sessionmaker() as session:
            await session.execute(delete(Job).where(Job.id == uuid.UUID(job["id"])))
            await session.commit()
        worker = await start_worker()

        await _drained(worker, redis, complete=1)
        assert await redis.exists(job_key(job["id"])) == 0
        async with sessionmaker() as session:
            assert (await session.execute(select(Job.id))).first() is None
        assert (await _read(client, token, job["id"])).status_code == 404

    async def test_job_cancelled_while_queued_is_not_run(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        start_worker: WorkerFactory,
    ) -> None:
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "never"})
        async with sessionmaker() as session:
            await session.execute(
                update(Job).where(Job.id == uuid.UUID(job["id"])).values(status="cancelled")
            )
            await session.commit()
        before = (await _read(client, token, job["id"])).json()
        worker = await start_worker()

        await _drained(worker, redis, complete=1)
        after = (await _read(client, token, job["id"])).json()
        assert after == before
        assert after["status"] == "cancelled"
        assert after["attempts"] == 0
        assert after["started_at"] is None

    async def test_redelivered_finished_job_keeps_its_one_outcome(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        arq_redis: ArqRedis,
        worker: Worker,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "once"})
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        await _drained(worker, redis, complete=1)

        # ARQ forgot the finished job, so a late duplicate delivery is accepted by Redis...
        assert await enqueue(arq_redis, [_delivery(job, tenant_id)]) == 1
        await _drained(worker, redis, complete=2)
        # ...and skipped by the runner: the row is exactly as the first run left it.
        assert (await _read(client, token, job["id"])).json() == done


class TestReenqueue:
    async def test_reenqueueing_a_queued_job_is_a_no_op(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        arq_redis: ArqRedis,
        start_worker: WorkerFactory,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "one"})
        delivery = _delivery(job, tenant_id)
        assert await enqueue(arq_redis, [delivery]) == 0
        assert await enqueue(arq_redis, [delivery, delivery]) == 0
        assert await redis.zcard(queue_key("default")) == 1

        worker = await start_worker()
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1
        await _drained(worker, redis, complete=1)

    async def test_a_new_job_in_the_same_batch_is_still_added(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        arq_redis: ArqRedis,
        start_worker: WorkerFactory,
    ) -> None:
        tenant_id, token = await make_tenant(sessionmaker)
        first = await submit(client, token, "echo", {"message": "a"})
        second = await submit(client, token, "echo", {"message": "b"})
        # The reconciler's case: one job's hand-off was lost, the other's was not.
        await redis.delete(job_key(second["id"]))
        await redis.zrem(queue_key("default"), second["id"])
        deliveries = [_delivery(first, tenant_id), _delivery(second, tenant_id)]
        assert await enqueue(arq_redis, deliveries) == 1

        worker = await start_worker()
        for job in (first, second):
            done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
            assert done["status"] == "succeeded"
            assert done["attempts"] == 1
        await _drained(worker, redis, complete=2)


class TestTimeouts:
    async def test_a_timeout_error_of_job_code_is_its_own_error_not_the_attempt_limit(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        async def calls_a_slow_upstream(job: JobContext, args: Any) -> Any:
            raise TimeoutError("the upstream did not answer in 2 s")

        await start_worker_with_binding(
            settings,
            start_worker,
            "echo",
            lambda binding: replace(binding, function=calls_a_slow_upstream),
        )
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 1})

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["error"] == {
            "type": "TimeoutError",
            "message": "the upstream did not answer in 2 s",
        }


class TestForeignDeliveries:
    async def test_payloads_not_of_jobgate_are_dropped_and_the_worker_runs_on(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        redis: Redis,
        start_worker: WorkerFactory,
    ) -> None:
        """Someone else's ARQ jobs on a jobgate queue: unknown function, a tenant that is not
        an id, a job id that is not one, a payload that is not JSON."""
        queue = queue_key("default")
        foreign = {
            "not-a-uuid": {"f": "echo", "a": [], "k": {"tenant_id": str(uuid.uuid4())}},
            str(uuid.uuid4()): {"f": "echo", "a": [], "k": {"tenant_id": "acme"}},
            str(uuid.uuid4()): {"f": "send_rockets", "a": [], "k": {}},
        }
        for job_id, payload in foreign.items():
            await redis.set(job_key(job_id), json.dumps(payload))
        garbled = str(uuid.uuid4())
        await redis.set(job_key(garbled), b"\x80not json")
        await redis.zadd(queue, dict.fromkeys([*foreign, garbled], 1))
        _, token = await make_tenant(sessionmaker)

        await start_worker()
        job = await submit(client, token, "echo", {"message": "after them"})
        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert done["status"] == "succeeded"
        for _ in range(100):  # the foreign ones leave the queue as they are dropped
            if await redis.zcard(queue) == 0:
                break
            await asyncio.sleep(0.05)
        assert await redis.zcard(queue) == 0
