"""Concurrency keys in real workers: one key's jobs never overlap, others are not held up, a
waiting job is woken (not polled) and uses no try, and the cancelling strategies stop the jobs
they supersede."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.keys import KEY_WAITING_INDEX, concurrency_scope, in_progress_key, key_running_key
from shared.settings import Settings
from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status
from tests.keyed_jobs import KEYED_TYPES
from tests.polling import POLL_INTERVAL_SECONDS, poll_job
from worker.testing import declared

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def keyed(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that knows the keyed test types (declared for this test, workers included)."""
    with declared(*KEYED_TYPES):
        yield await make_client()


@pytest.fixture
async def tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """The tenant `acme`: (its id, a key with every scope)."""
    return await make_tenant(sessionmaker)


@pytest.fixture
def token(tenant: tuple[str, str]) -> str:
    return tenant[1]


def _args(customer: str, seconds: float) -> dict[str, Any]:
    return {"customer": {"id": customer}, "seconds": seconds}


def _waits(job_type: str) -> float:
    """How often workers of this process turned a job of this type away for its key."""
    found = REGISTRY.get_sample_value(
        "jobgate_worker_concurrency_waits_total", {"job_type": job_type}
    )
    return found or 0.0


async def _gauge(client: httpx.AsyncClient, job_type: str) -> float:
    """The gateway's `jobgate_concurrency_waiting` for a job type."""
    metrics = (await client.get("/metrics")).text
    prefix = f'jobgate_concurrency_waiting{{job_type="{job_type}"}} '
    (line,) = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(line.removeprefix(prefix))


async def _until_waiting(client: httpx.AsyncClient, job_type: str, count: int) -> None:
    """Wait until `count` jobs of the type wait for their key (the gauge says so)."""
    deadline = time.monotonic() + 5
    while await _gauge(client, job_type) != count:
        assert time.monotonic() < deadline, f"{count} {job_type} jobs never waited"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def _running(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    return await poll_job(client, token, job_id, lambda job: job["status"] == "running")


class TestQueue:
    async def test_one_keys_runs_never_overlap_and_another_key_starts_at_once(
        self, keyed: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        waits_before = _waits("keyed_queue")
        first = await submit(keyed, token, "keyed_queue", _args("42", 0.6))
        second = await submit(keyed, token, "keyed_queue", _args("42", 0.6))
        other = await submit(keyed, token, "keyed_queue", _args("7", 0.6))
        done = [
            await wait_for_status(keyed, token, job["id"], "succeeded")
            for job in (first, second, other)
        ]
        # Taken in the same poll, the two race for the key's slot: either may run first.
        (_, first_end), (second_start, _) = sorted(
            (job["result"]["started"], job["result"]["ended"]) for job in done[:2]
        )
        assert second_start >= first_end  # the key's second run began once the first ended
        assert done[2]["result"]["started"] < first_end  # the other key's did not wait
        assert [job["attempts"] for job in done] == [1, 1, 1]  # waiting is no attempt
        # Woken when the slot freed, not polled: the waiting job was turned away once.
        assert _waits("keyed_queue") - waits_before == 1

    async def test_waiting_jobs_start_in_the_order_they_were_submitted(
        self, keyed: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        first = await submit(keyed, token, "keyed_queue", _args("42", 0.4))
        await _running(keyed, token, first["id"])
        later = [await submit(keyed, token, "keyed_queue", _args("42", 0.05)) for _ in range(4)]
        done = [await wait_for_status(keyed, token, job["id"], "succeeded") for job in later]
        starts = [job["result"]["started"] for job in done]
        assert starts == sorted(starts)

    async def test_the_gauge_counts_the_waiting_job_and_a_cancel_takes_it_out(
        self, keyed: httpx.AsyncClient, token: str, start_worker: WorkerFactory, redis: Redis
    ) -> None:
        await start_worker()
        first = await submit(keyed, token, "keyed_queue", _args("42", 1.0))
        await _running(keyed, token, first["id"])
        second = await submit(keyed, token, "keyed_queue", _args("42", 0.0))
        await _until_waiting(keyed, "keyed_queue", 1)
        assert await redis.hlen(KEY_WAITING_INDEX) == 1  # type: ignore[misc]

        cancelled = await keyed.post(f"/jobs/{second['id']}/cancel", headers=auth(token))
        assert cancelled.status_code == 200, cancelled.text
        assert await _gauge(keyed, "keyed_queue") == 0
        assert await redis.hlen(KEY_WAITING_INDEX) == 0  # type: ignore[misc]
        await wait_for_status(keyed, token, first["id"], "succeeded")
        assert (await wait_for_status(keyed, token, second["id"], "cancelled"))["attempts"] == 0

    async def test_keys_are_the_tenants_own(
        self,
        keyed: httpx.AsyncClient,
        token: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        start_worker: WorkerFactory,
    ) -> None:
        await start_worker()
        _, other = await make_tenant(sessionmaker, "globex")
        mine = await submit(keyed, token, "keyed_queue", _args("42", 0.5))
        theirs = await submit(keyed, other, "keyed_queue", _args("42", 0.5))
        a = (await wait_for_status(keyed, token, mine["id"], "succeeded"))["result"]
        b = (await wait_for_status(keyed, other, theirs["id"], "succeeded"))["result"]
        assert a["started"] < b["ended"] and b["started"] < a["ended"]  # side by side

    async def test_a_slot_never_given_back_frees_with_its_lease_and_wakes_the_waiter(
        self,
        keyed: httpx.AsyncClient,
        tenant: tuple[str, str],
        settings: Settings,
        start_worker: WorkerFactory,
        redis: Redis,
    ) -> None:
        """A worker that died holding the key's slot: its lease (in-progress key) lapses, and
        the reconciler's pass puts the waiting job back on its queue."""
        tenant_id, token = tenant
        dead = str(uuid.uuid4())
        slots = key_running_key(concurrency_scope(tenant_id, "keyed_queue", "42"))
        await redis.set(in_progress_key(dead), "1")
        await redis.zadd(slots, {dead: 1})
        reconciling = {"reconcile_interval_seconds": 0.2, "reconcile_grace_seconds": 60}
        await start_worker(settings=settings.model_copy(update=reconciling))
        waiting = await submit(keyed, token, "keyed_queue", _args("42", 0.0))
        await _until_waiting(keyed, "keyed_queue", 1)

        await redis.delete(in_progress_key(dead))  # its worker died: the lease lapses
        done = await wait_for_status(keyed, token, waiting["id"], "succeeded", timeout=10)
        assert done["attempts"] == 1


class TestCancelInProgress:
    async def test_a_new_job_aborts_the_running_one_and_runs_after_it(
        self, keyed: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        older = await submit(keyed, token, "keyed_latest", _args("42", 30.0))
        await _running(keyed, token, older["id"])
        newer = await submit(keyed, token, "keyed_latest", _args("42", 0.0))

        stopped = await wait_for_status(keyed, token, older["id"], "cancelled")
        assert stopped["error"] == {
            "type": "cancelled",
            "message": f"superseded by job {newer['id']} with the same concurrency key '42'"
            " (cancel_in_progress)",
        }
        done = await wait_for_status(keyed, token, newer["id"], "succeeded")
        assert done["started_at"] >= stopped["finished_at"]
        assert done["attempts"] == 1


class TestCancelNewest:
    async def test_the_running_job_finishes_and_the_newcomer_never_runs(
        self, keyed: httpx.AsyncClient, token: str, start_worker: WorkerFactory
    ) -> None:
        await start_worker()
        running = await submit(keyed, token, "keyed_once", _args("42", 0.3))
        await _running(keyed, token, running["id"])
        refused = await submit(keyed, token, "keyed_once", _args("42", 0.0))
        assert refused["status"] == "cancelled"
        await wait_for_status(keyed, token, running["id"], "succeeded")
        # Once the key is free again, a new job runs.
        again = await submit(keyed, token, "keyed_once", _args("42", 0.0))
        await wait_for_status(keyed, token, again["id"], "succeeded")
        assert (await wait_for_status(keyed, token, refused["id"], "cancelled"))["attempts"] == 0
