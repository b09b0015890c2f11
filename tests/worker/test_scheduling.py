"""The promoter moves scheduled jobs onto their queue when the first is due, woken early by a job
its own worker schedules, and at least once an interval otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis

from shared.jobs.enqueue import Delivery, enqueue, next_due_ms
from shared.keys import queue_key
from worker.scheduling import Promoter

INTERVAL_SECONDS = 5.0
"""Far longer than any wait below: a job promoted sooner was promoted at its due time."""


def _delivery(in_seconds: float) -> Delivery:
    return Delivery(
        job_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        name="echo",
        queue="default",
        run_at=datetime.now(UTC) + timedelta(seconds=in_seconds),
    )


async def _seconds_until_queued(redis: ArqRedis, delivery: Delivery, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()
    while await redis.zscore(queue_key("default"), str(delivery.job_id)) is None:
        assert loop.time() - began < timeout, "not promoted in time"
        await asyncio.sleep(0.005)
    return loop.time() - began


@pytest.fixture
async def promoter(arq_redis: ArqRedis) -> AsyncIterator[Promoter]:
    promoter = Promoter(arq_redis, INTERVAL_SECONDS)
    task = asyncio.create_task(promoter.run_forever())
    await asyncio.sleep(0.05)  # its first pass found nothing: it sleeps the whole interval
    yield promoter
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_next_due_is_the_first_scheduled_job(arq_redis: ArqRedis) -> None:
    assert await next_due_ms(arq_redis) is None
    later, sooner = _delivery(60), _delivery(30)
    await enqueue(arq_redis, [later, sooner])
    assert sooner.run_at is not None
    assert await next_due_ms(arq_redis) == int(sooner.run_at.timestamp() * 1000)


async def test_a_job_this_worker_schedules_is_promoted_when_due(
    arq_redis: ArqRedis, promoter: Promoter
) -> None:
    delivery = _delivery(0.2)
    await enqueue(arq_redis, [delivery])
    promoter.expect(delivery.run_at)
    waited = await _seconds_until_queued(arq_redis, delivery, timeout=2)
    assert 0.15 <= waited < 0.5


async def test_a_job_due_first_when_it_looks_is_promoted_when_due(arq_redis: ArqRedis) -> None:
    delivery = _delivery(0.3)
    await enqueue(arq_redis, [delivery])
    task = asyncio.create_task(Promoter(arq_redis, INTERVAL_SECONDS).run_forever())
    try:
        assert await _seconds_until_queued(arq_redis, delivery, timeout=2) < 0.6
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_job_scheduled_elsewhere_waits_for_the_interval(
    arq_redis: ArqRedis, promoter: Promoter
) -> None:
    delivery = _delivery(0.1)
    await enqueue(arq_redis, [delivery])  # by a gateway, say: nobody tells this promoter
    promoter.expect(None)  # a job without a due time changes nothing either
    await asyncio.sleep(0.5)
    assert await arq_redis.zscore(queue_key("default"), str(delivery.job_id)) is None
    promoter.expect(datetime.now(UTC) + timedelta(hours=1))  # after its planned pass: no wake
    await asyncio.sleep(0.1)
    assert await arq_redis.zscore(queue_key("default"), str(delivery.job_id)) is None
