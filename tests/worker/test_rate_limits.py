"""Rate limits per job type, kept by real workers: jobs over the limit wait without using a try,
each keyed schedule is its own, and a waiting job starts at its booked start, not a poll later.
Two worker processes and another type on the same queue: tests/chaos/test_job_type_rate_limits.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.keys import job_rate_booking_key
from shared.settings import Settings
from tests.conftest import ClientFactory, WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_until
from tests.rate_limited_jobs import RATE_LIMITED_TYPES, STAMP_PER_CUSTOMER, STAMP_RATE_LIMITED
from worker.loop import WakeableWorker
from worker.rate_limits import WAIT_IN_PLACE
from worker.testing import declared


@pytest.fixture(autouse=True)
def _rate_limited_types() -> Iterator[None]:
    with declared(*RATE_LIMITED_TYPES):
        yield


def _deferrals(job_type: str) -> float:
    value = REGISTRY.get_sample_value("jobgate_rate_limited_total", {"job_type": job_type})
    return value or 0.0


async def _submit_all(
    client: httpx.AsyncClient, token: str, name: str, args: list[dict[str, Any]]
) -> list[str]:
    return [(await submit(client, token, name, one))["id"] for one in args]


async def _started(client: httpx.AsyncClient, token: str, ids: list[str]) -> list[float]:
    """When each job's function began, once all have succeeded (each on its first try)."""
    jobs = [await wait_for_status(client, token, job_id, "succeeded") for job_id in ids]
    assert [job["attempts"] for job in jobs] == [1] * len(ids)
    return [job["result"]["started"] for job in jobs]


async def test_jobs_over_the_limit_wait_their_turn_without_using_a_try(
    make_client: ClientFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    client = await make_client()
    _, token = await make_tenant(sessionmaker)
    deferred_before = _deferrals(STAMP_RATE_LIMITED.name)
    await start_worker()
    # 10 a second with a burst of 2: three start at once, the others 100 ms apart. Each has
    # max_tries 1, so a wait that used a try would fail the job.
    ids = await _submit_all(client, token, STAMP_RATE_LIMITED.name, [{}] * 6)
    starts = sorted(await _started(client, token, ids))
    spread = [round(later - starts[0], 2) for later in starts]
    assert spread[-1] >= 0.25, spread  # three intervals after the burst, less the pickup
    assert _deferrals(STAMP_RATE_LIMITED.name) - deferred_before >= 3


async def test_each_tenant_and_key_has_its_own_schedule(
    make_client: ClientFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    client = await make_client()
    _, acme = await make_tenant(sessionmaker, "acme")
    _, globex = await make_tenant(sessionmaker, "globex")
    await start_worker()
    name = STAMP_PER_CUSTOMER.name  # one start per 2 s for each tenant and customer
    first, second, other = await _submit_all(
        client, acme, name, [{"customer_id": "a"}, {"customer_id": "a"}, {"customer_id": "b"}]
    )
    (elsewhere,) = await _submit_all(client, globex, name, [{"customer_id": "a"}])
    (unkeyed,) = await _submit_all(client, acme, name, [{}])

    first_at, second_at, other_at, unkeyed_at = await _started(
        client, acme, [first, second, other, unkeyed]
    )
    (elsewhere_at,) = await _started(client, globex, [elsewhere])
    # The same tenant and customer: whichever reached the limiter second waited its turn.
    assert abs(second_at - first_at) >= 1.9
    # Another customer, the same customer of another tenant and a job without a customer:
    # none waited for that schedule.
    assert max(other_at, elsewhere_at, unkeyed_at) - min(first_at, second_at) < 1.0


async def test_a_job_put_back_starts_at_its_booked_start_not_a_poll_later(
    make_client: ClientFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    client = await make_client()
    _, token = await make_tenant(sessionmaker)
    # Polls (and the scheduled set's promotion, by default) 4 s apart: only being woken at
    # the booked start lets the second job start 2 s after the first, not 4 s.
    await start_worker(settings=settings.model_copy(update={"worker_poll_delay_seconds": 4.0}))
    both = [{"customer_id": "a"}] * 2  # one start per 2 s for the key: the second is put back
    ids = await _submit_all(client, token, STAMP_PER_CUSTOMER.name, both)
    first, second = sorted(await _started(client, token, ids))
    assert 1.9 <= second - first < 3.0


async def test_a_start_due_shortly_is_waited_for_in_place(
    make_client: ClientFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    start_worker: WorkerFactory,
) -> None:
    client = await make_client()
    _, token = await make_tenant(sessionmaker)
    worker = await start_worker()
    assert isinstance(worker, WakeableWorker)
    # The burst of 3 at once, the 4th 100 ms later: too near to put it back.
    ids = await _submit_all(client, token, STAMP_RATE_LIMITED.name, [{}] * 4)
    starts = sorted(await _started(client, token, ids))
    assert starts[3] - starts[0] < WAIT_IN_PLACE.total_seconds(), starts
    # Four runs, each ended once in Redis: a job put back would have ended twice.
    await poll_until(lambda: worker.jobs_finished >= 4, what="the runs ended")
    await asyncio.sleep(0.1)
    assert worker.jobs_finished == 4
    assert not await redis.keys(job_rate_booking_key("*"))  # no booking is left over
