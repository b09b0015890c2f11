"""Worker presence in Redis: alive while announced, gone when expired or withdrawn."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from arq.connections import ArqRedis

from shared.keys import WORKERS_SET
from shared.presence import WorkerPresence, alive_workers, announce, withdraw


def _worker(name: str) -> WorkerPresence:
    return WorkerPresence(name=name, queues=["default"], in_flight={"default": 0})


async def test_an_announcement_reads_back_whole(arq_redis: ArqRedis) -> None:
    sent = replace(
        _worker("a:1"), running=["j1"], started=3, finished=2, since=1.5, announced_at=2.5
    )
    await announce(arq_redis, sent, ttl_seconds=30)
    assert await alive_workers(arq_redis) == [sent]


async def test_a_worker_that_stops_announcing_drops_out_and_is_pruned(
    arq_redis: ArqRedis,
) -> None:
    await announce(arq_redis, _worker("gone:1"), ttl_seconds=0.1)
    await announce(arq_redis, _worker("kept:2"), ttl_seconds=30)
    await asyncio.sleep(0.2)  # the first announcement's lifetime, as Redis keeps it
    assert [worker.name for worker in await alive_workers(arq_redis)] == ["kept:2"]
    await announce(arq_redis, _worker("kept:2"), ttl_seconds=30)  # each announcement prunes
    assert await arq_redis.smembers(WORKERS_SET) == {b"kept:2"}  # type: ignore[misc]


async def test_a_withdrawn_worker_is_gone_at_once(arq_redis: ArqRedis) -> None:
    await announce(arq_redis, _worker("a:1"), ttl_seconds=30)
    await withdraw(arq_redis, "a:1")
    assert await alive_workers(arq_redis) == []
