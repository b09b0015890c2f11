"""jobgate's own PostgreSQL failing under job code is not the job's failure; the job's own is.

On a real worker whose `echo` binding runs the function under test (see `worker.platform_failures`
for where the line between the two is drawn).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import EchoResult
from shared.db import libpq_url
from shared.keys import RECONCILER_LOCK
from shared.settings import Settings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from worker.context import JobContext


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(libpq_url(settings.require_database_url()))
    yield connection
    await connection.close()


async def test_an_outage_met_through_the_job_context_hands_the_attempt_back_uncounted(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    admin: asyncpg.Connection,
    start_worker: WorkerFactory,
    redis: Redis,
) -> None:
    database = make_url(settings.require_database_url()).database
    attempts_seen: list[int] = []
    # The worker's reconciler shares the job's pool: a pass meeting the cut connections first
    # would have SQLAlchemy replace them all before the job queries. Held off for this test.
    await redis.set(RECONCILER_LOCK, "1", px=60_000)

    async def reads_its_tenants_data(job: JobContext, args: Any) -> EchoResult:
        attempts_seen.append(job.attempt)
        if len(attempts_seen) == 1:
            # The worker's pooled connections cut, as a failover or an operator would; waits
            # until they are gone (PostgreSQL 14+), so the next query meets a dead one.
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = $1 AND application_name = 'jobgate-worker'",
                database,
            )
        await job.data.job_counts(datetime(2000, 1, 1, tzinfo=UTC))
        return EchoResult(message=args.message)

    await start_worker_with_binding(
        settings,
        start_worker,
        "echo",
        lambda binding: replace(binding, function=reads_its_tenants_data),
    )
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 1})

    done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=20)
    # Its one try was not used up by jobgate's failure: the attempt ran again as the first.
    assert attempts_seen == [1, 1]
    assert (done["status"], done["attempts"], done["error"]) == ("succeeded", 1, None)


async def test_a_sqlalchemy_error_of_job_code_is_recorded_without_its_sql_or_driver_text(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    """Job code querying a database of its own: its error, but shown to the tenant without
    the statement, parameters and driver message SQLAlchemy's text carries."""

    async def queries_a_missing_table(job: JobContext, args: Any) -> EchoResult:
        async with sessionmaker() as session:
            await session.execute(
                text("SELECT secret FROM no_such_table WHERE id = :id"), {"id": 7}
            )
        return EchoResult(message=args.message)

    await start_worker_with_binding(
        settings,
        start_worker,
        "echo",
        lambda binding: replace(binding, function=queries_a_missing_table),
    )
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 1})

    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["error"] == {
        "type": "ProgrammingError",
        "message": "ProgrammingError (SQLSTATE 42P01)",
    }
