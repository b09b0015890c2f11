"""PostgreSQL fails under running jobs: the platform's failure is never the job's.

A worker's connections cut mid-job (`pg_terminate_backend`, a failover, a restarted pooler),
or PostgreSQL refusing connections for a few seconds, must not use up a job's tries nor end
up in its `error`: progress is best effort, and outcomes are written once PostgreSQL answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import libpq_url
from shared.models import Job
from shared.settings import Settings
from shared.status import TERMINAL
from tests.chaos.conftest import GatewayFactory, SpawnWorker
from tests.chaos.outages import TcpProxy, database_address
from tests.factories import auth, make_tenant, submit
from tests.polling import POLL_INTERVAL_SECONDS

JOBS = 8
PLATFORM_TEXT = ("sqlalchemy", "asyncpg", "sqlstate", "background on this error", "select ")
"""What a driver's or SQLAlchemy's message carries; none of it may reach a job's `error`."""


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(libpq_url(settings.require_database_url()))
    yield connection
    await connection.close()


async def _statuses(
    sessionmaker: async_sessionmaker[AsyncSession], ids: list[str]
) -> dict[str, str]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Job.id, Job.status).where(Job.id.in_([uuid.UUID(i) for i in ids]))
        )
        return {str(job_id): status for job_id, status in rows.all()}


async def _wait_for_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    ids: list[str],
    wanted: set[str],
    *,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = await _statuses(sessionmaker, ids)
        if all(status in wanted for status in statuses.values()):
            return
        assert time.monotonic() < deadline, f"not all {wanted} within {timeout} s: {statuses}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS * 5)


async def _views(http: httpx.AsyncClient, token: str, ids: list[str]) -> list[dict[str, Any]]:
    views = []
    for job_id in ids:
        response = await http.get(f"/jobs/{job_id}", headers=auth(token))
        assert response.status_code == 200, response.text
        views.append(response.json())
    return views


def _assert_no_try_lost(views: list[dict[str, Any]]) -> None:
    """Every job succeeded on its one try (`sleep` has `max_tries` 1), no platform text shown."""
    for view in views:
        shown = str(view["error"]).lower()
        assert not [text for text in PLATFORM_TEXT if text in shown], view
    outcomes = [(view["status"], view["attempts"]) for view in views]
    assert outcomes == [("succeeded", 1)] * len(views), views


async def test_connections_cut_under_running_jobs_cost_them_nothing(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    admin: asyncpg.Connection,
    spawn_worker: SpawnWorker,
) -> None:
    database = make_url(settings.require_database_url()).database
    http = await make_gateway()
    _, token = await make_tenant(sessionmaker)
    await spawn_worker().started()
    # Progress every 50 ms: most cuts land on a progress write, some on a job's outcome.
    jobs = [await submit(http, token, "sleep", {"seconds": 2.5, "steps": 50}) for _ in range(JOBS)]
    ids = [job["id"] for job in jobs]
    await _wait_for_all(sessionmaker, ids, {"running", *TERMINAL}, timeout=30)

    cuts = 0

    async def cut_forever() -> None:
        nonlocal cuts
        while True:
            # The worker's pool only (its health probe is `jobgate-worker-health`).
            cuts += await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND application_name = 'jobgate-worker'",
                database,
            )
            await asyncio.sleep(0.15)

    cutter = asyncio.create_task(cut_forever())
    try:
        await _wait_for_all(sessionmaker, ids, {status.value for status in TERMINAL}, timeout=60)
    finally:
        cutter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cutter
    assert cuts >= JOBS, cuts  # the jobs did lose their connections, many times
    _assert_no_try_lost(await _views(http, token, ids))


@pytest.fixture
async def database_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(database_address(settings.require_database_url()))
    await proxy.open()
    yield proxy
    await proxy.close()


async def test_jobs_that_end_while_postgresql_refuses_are_recorded_once_it_is_back(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    database_proxy: TcpProxy,
    spawn_worker: SpawnWorker,
) -> None:
    """The worker reaches PostgreSQL through a proxy that refuses every connection a while:
    the jobs report progress into the outage and end in it; their outcome waits for it."""
    proxied = (
        make_url(settings.require_database_url())
        .set(host="127.0.0.1", port=database_proxy.port)
        .difference_update_query(["host"])
    )
    http = await make_gateway()
    _, token = await make_tenant(sessionmaker)
    worker = await spawn_worker(
        database_url=proxied.render_as_string(hide_password=False),
        db_connect_timeout_seconds=1,
    ).started()
    jobs = [await submit(http, token, "sleep", {"seconds": 1.5, "steps": 15}) for _ in range(JOBS)]
    ids = [job["id"] for job in jobs]
    await _wait_for_all(sessionmaker, ids, {"running"}, timeout=30)

    await database_proxy.close()  # refused, and every open connection cut
    await worker.wait_for_log("health.database_down")
    # Until every job's function has returned: each then waits to write its outcome.
    deadline = time.monotonic() + 30
    while worker.log().count("job.outcome_deferred") < JOBS:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        await asyncio.sleep(POLL_INTERVAL_SECONDS * 5)
    assert set((await _statuses(sessionmaker, ids)).values()) == {"running"}
    await database_proxy.open()

    await _wait_for_all(sessionmaker, ids, {status.value for status in TERMINAL}, timeout=30)
    _assert_no_try_lost(await _views(http, token, ids))
    assert worker.is_running()
