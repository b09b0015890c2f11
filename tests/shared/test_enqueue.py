"""Handing jobs to ARQ on real Redis: one script call for a batch of mixed jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.jobs import deserialize_job

from shared.jobs.enqueue import Delivery, enqueue
from shared.keys import SCHEDULED_SET, job_key, queue_key
from shared.redis import deserialize_payload


async def test_each_job_of_a_mixed_batch_gets_its_own_payload_and_place(
    arq_redis: ArqRedis,
) -> None:
    tenants = [uuid.uuid4(), uuid.uuid4()]
    later = datetime.now(UTC) + timedelta(hours=1)
    deliveries = [
        Delivery(job_id=uuid.uuid4(), tenant_id=tenant, name=name, queue="default")
        for tenant in tenants
        for name in ("echo", "sleep")
    ]
    delayed = Delivery(
        job_id=uuid.uuid4(), tenant_id=tenants[1], name="echo", queue="default", run_at=later
    )

    assert await enqueue(arq_redis, [*deliveries, delayed]) == 5

    for delivery in [*deliveries, delayed]:
        raw = await arq_redis.get(job_key(str(delivery.job_id)))
        assert raw is not None
        job = deserialize_job(raw, deserializer=deserialize_payload)
        assert (job.function, job.kwargs) == (delivery.name, {"tenant_id": str(delivery.tenant_id)})
    queued = await arq_redis.zrange(queue_key("default"), 0, -1)
    assert sorted(queued) == sorted(str(delivery.job_id).encode() for delivery in deliveries)
    scheduled = await arq_redis.zrange(SCHEDULED_SET, 0, -1, withscores=True)
    due_ms = float(int(later.timestamp() * 1000))
    assert scheduled == [(delayed.scheduled_member().encode(), due_ms)]


async def test_enqueueing_a_job_again_changes_nothing(arq_redis: ArqRedis) -> None:
    delivery = Delivery(job_id=uuid.uuid4(), tenant_id=uuid.uuid4(), name="echo", queue="default")
    assert await enqueue(arq_redis, [delivery]) == 1
    score = await arq_redis.zscore(queue_key("default"), str(delivery.job_id))

    assert await enqueue(arq_redis, [delivery, delivery]) == 0
    assert await arq_redis.zscore(queue_key("default"), str(delivery.job_id)) == score
    assert await arq_redis.zcard(queue_key("default")) == 1
