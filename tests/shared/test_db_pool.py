"""The engine's pool gives back what a burst opened: overflow connections close on return.

Counted where PostgreSQL sees them (`pg_stat_activity`, by the engine's own application_name),
through both ways the code takes connections: SQLAlchemy sessions and `shared.jobs.raw_sql`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, libpq_url
from shared.jobs.raw_sql import fetch
from shared.settings import Settings
from tests.polling import POLL_INTERVAL_SECONDS

POOL_SIZE, MAX_OVERFLOW = 1, 3
BURST = POOL_SIZE + MAX_OVERFLOW


@pytest.fixture
def application_name() -> str:
    return f"jobgate-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def engine(settings: Settings, application_name: str) -> AsyncIterator[AsyncEngine]:
    sized = settings.model_copy(update={"db_pool_size": POOL_SIZE, "db_max_overflow": MAX_OVERFLOW})
    engine = create_engine(sized, application_name=application_name)
    yield engine
    await engine.dispose()


@pytest.fixture
async def server_sessions(
    settings: Settings, application_name: str
) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """How many sessions PostgreSQL has for the engine under test."""
    admin = await asyncpg.connect(libpq_url(settings.require_database_url()))

    async def count() -> int:
        found: int = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return found

    yield count
    await admin.close()


async def _settles_at(count: Callable[[], Awaitable[int]], expected: int) -> None:
    """A closed session leaves pg_stat_activity when its server process has exited."""
    deadline = asyncio.get_running_loop().time() + 5
    while (found := await count()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{found} sessions, not {expected}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def test_a_session_burst_opens_overflow_then_closes_it(
    engine: AsyncEngine, server_sessions: Callable[[], Awaitable[int]]
) -> None:
    release = asyncio.Event()
    holding = [asyncio.Event() for _ in range(BURST)]

    async def hold(held: asyncio.Event) -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            held.set()
            await release.wait()

    holders = [asyncio.create_task(hold(held)) for held in holding]
    async with asyncio.timeout(5):
        await asyncio.gather(*(held.wait() for held in holding))
    assert await server_sessions() == BURST

    release.set()
    await asyncio.gather(*holders)

    await _settles_at(server_sessions, POOL_SIZE)


async def test_a_raw_statement_burst_closes_its_overflow_cleanly(
    engine: AsyncEngine,
    server_sessions: Callable[[], Awaitable[int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hot path hands connections back without a greenlet; closing one is I/O and needs
    one (SQLAlchemy would log `MissingGreenlet` and leave the socket to the collector)."""
    with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
        await asyncio.gather(*(fetch(engine, "SELECT pg_sleep(0.2)") for _ in range(BURST)))

    assert not caplog.records, [record.getMessage() for record in caplog.records]
    await _settles_at(server_sessions, POOL_SIZE)
    # What stays is usable, and is what the next statement takes.
    rows = await fetch(engine, "SELECT 1 AS one")
    assert rows[0]["one"] == 1
    assert await server_sessions() == POOL_SIZE
