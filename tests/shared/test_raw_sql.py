"""Statements on the pool's own connections: each handed back, reconnected if invalidated."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from shared.db import create_engine
from shared.errors import DatabaseUnavailable
from shared.raw_sql import fetch, fetchrow
from shared.settings import Settings


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


def _pool(engine: AsyncEngine) -> QueuePool:
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def test_statements_reuse_one_idle_connection(engine: AsyncEngine) -> None:
    first = await fetchrow(engine, "SELECT pg_backend_pid() AS pid")
    second = await fetchrow(engine, "SELECT pg_backend_pid() AS pid")

    assert first is not None and second is not None
    assert first["pid"] == second["pid"]
    assert _pool(engine).checkedin() == 1
    assert _pool(engine).checkedout() == 0


async def test_an_idle_connection_that_was_invalidated_is_reconnected(
    engine: AsyncEngine,
) -> None:
    """It sits in the pool with no driver connection: taking it again connects anew."""
    before = await fetchrow(engine, "SELECT pg_backend_pid() AS pid")
    connection = await engine.raw_connection()
    connection.invalidate()  # back in the pool, its driver connection closed
    connection.close()
    assert _pool(engine).checkedin() == 1

    after = await fetchrow(engine, "SELECT pg_backend_pid() AS pid")

    assert before is not None and after is not None
    assert after["pid"] != before["pid"]
    assert _pool(engine).checkedout() == 0


async def test_an_unreachable_database_is_unavailable_not_a_driver_error(
    settings: Settings,
) -> None:
    url = settings.require_database_url().replace("127.0.0.1:5432", "127.0.0.1:9")
    engine = create_engine(settings.model_copy(update={"database_url": url}))
    try:
        with pytest.raises(DatabaseUnavailable):
            await fetch(engine, "SELECT 1")
    finally:
        await engine.dispose()
