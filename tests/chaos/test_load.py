"""Bounded load: 5,000 jobs from 50 concurrent clients of 3 tenants, 2 worker processes.

Every accepted job must end terminal, PostgreSQL's counts must match what was accepted, and
no answer may be an error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import create_app
from shared.models import Job
from shared.settings import Settings
from tests.factories import auth, make_tenant
from tests.polling import poll_until

JOBS = int(os.environ.get("JOBGATE_LOAD_JOBS", "5000"))
CLIENTS = 50
TENANTS = 3


@pytest.fixture
def worker_processes(settings: Settings) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two real `jobgate worker` processes on the test database and Redis."""
    env = {
        **os.environ,
        "JOBGATE_DATABASE_URL": settings.require_database_url(),
        "JOBGATE_REDIS_URL": settings.require_redis_url(),
        "JOBGATE_WORKER_POLL_DELAY_SECONDS": "0.05",
        "JOBGATE_WORKER_RUN_SCHEDULES": "false",
        "JOBGATE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "cli", "worker", "--queue", "default"]
    processes = [
        subprocess.Popen(command, env=env)  # noqa: S603 (our own interpreter and module)
        for _ in range(2)
    ]
    yield processes
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(timeout=30) == 0


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway sized for 50 concurrent clients (the suite's default pool is small)."""
    app = create_app(
        settings.model_copy(update={"db_pool_size": 20, "db_pool_timeout_seconds": 30})
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        yield http


@pytest.mark.timeout(240)
async def test_five_thousand_jobs_from_fifty_clients(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    tokens = [(await make_tenant(sessionmaker, f"load-{i}"))[1] for i in range(TENANTS)]
    statuses: Counter[int] = Counter()
    accepted: Counter[int] = Counter()

    async def one_client(number: int) -> None:
        tenant = number % TENANTS
        for i in range(number, JOBS, CLIENTS):
            response = await client.post(
                "/jobs/echo",
                json={"args": {"message": f"{i}"}},
                headers=auth(tokens[tenant]),
            )
            statuses[response.status_code] += 1
            if response.status_code == 202:
                accepted[tenant] += 1

    started = time.monotonic()
    await asyncio.gather(*(one_client(number) for number in range(CLIENTS)))
    submit_seconds = time.monotonic() - started
    assert statuses == Counter({202: JOBS})

    async def finished() -> int:
        async with sessionmaker() as session:
            result = await session.execute(
                select(func.count()).where(Job.status.in_(["succeeded", "failed", "cancelled"]))
            )
            return int(result.scalar_one())

    done = 0

    async def refresh() -> None:
        nonlocal done
        done = await finished()

    deadline = asyncio.get_running_loop().time() + 120
    while done < JOBS and asyncio.get_running_loop().time() < deadline:
        await refresh()
        await asyncio.sleep(0.5)
    await poll_until(lambda: done == JOBS, timeout=0.1, what=f"{done} of {JOBS} jobs finished")

    async with sessionmaker() as session:
        rows = await session.execute(
            select(Job.tenant_id, Job.status, Job.attempts, func.count()).group_by(
                Job.tenant_id, Job.status, Job.attempts
            )
        )
        table = rows.all()
    assert {(status, attempts) for _, status, attempts, _ in table} == {("succeeded", 1)}
    assert sorted(count for *_, count in table) == sorted(accepted.values())
    assert all(process.poll() is None for process in worker_processes)
    total_seconds = time.monotonic() - started
    print(f"load: {JOBS} submits in {submit_seconds:.1f} s, all done in {total_seconds:.1f} s")
