"""`jobgate worker`'s PostgreSQL sessions: one pool for all its queues, plus its health probe."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from shared.db import libpq_url
from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker
from tests.polling import POLL_INTERVAL_SECONDS

QUEUES = ("default", "email", "data_processing", "maintenance")


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(libpq_url(settings.require_database_url()))
    yield connection
    await connection.close()


async def _worker_sessions(admin: asyncpg.Connection, database: str) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT application_name, count(*) AS n FROM pg_stat_activity"
        " WHERE datname = $1 AND application_name LIKE 'jobgate-worker%' GROUP BY 1",
        database,
    )
    return {row["application_name"]: row["n"] for row in rows}


async def _wait_until_every_queue_polls(redis: Redis, timeout: float = 20) -> None:
    """ARQ writes a queue's health key from its poll loop, so after that queue's on_startup."""
    deadline = time.monotonic() + timeout
    keys = [f"jobgate:worker-health:{queue}" for queue in QUEUES]
    while await redis.exists(*keys) < len(keys):
        assert time.monotonic() < deadline, "not every queue's worker started"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def test_a_worker_serving_every_queue_holds_one_pool_and_one_probe(
    spawn_worker: SpawnWorker, settings: Settings, admin: asyncpg.Connection, redis: Redis
) -> None:
    database = make_url(settings.require_database_url()).database
    assert database is not None
    # Pools of one connection: a pool per queue would show four `jobgate-worker` sessions.
    worker = spawn_worker(
        *(option for queue in QUEUES[1:] for option in ("--queue", queue)),
        db_pool_size=1,
        db_max_overflow=0,
    )
    await _wait_until_every_queue_polls(redis)
    deadline = time.monotonic() + 10
    while "jobgate-worker-health" not in (sessions := await _worker_sessions(admin, database)):
        assert time.monotonic() < deadline, sessions  # the probe checks once per interval
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    assert sessions == {"jobgate-worker": 1, "jobgate-worker-health": 1}

    worker.signal(signal.SIGTERM)
    assert await worker.exit_code(timeout=20) == 0
    assert "MissingGreenlet" not in worker.log()
    assert "Exception closing" not in worker.log()
