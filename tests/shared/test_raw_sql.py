"""Statements on the pool's own connections: each handed back, reconnected if invalidated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util.concurrency import in_greenlet

from shared.db import create_engine
from shared.errors import DatabaseUnavailable
from shared.jobs.raw_sql import fetch, fetchrow
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


async def test_an_idle_connection_is_taken_without_a_greenlet(engine: AsyncEngine) -> None:
    """Only a checkout that must connect (or wait) runs in SQLAlchemy's greenlet."""
    in_greenlets: list[bool] = []

    def checked_out(*_: Any) -> None:
        in_greenlets.append(in_greenlet())

    event.listen(_pool(engine), "checkout", checked_out)

    await fetch(engine, "SELECT 1")  # the pool is empty: this one connects
    await fetch(engine, "SELECT 1")

    assert in_greenlets == [True, False]


async def test_statements_wait_for_a_connection_when_none_is_idle(settings: Settings) -> None:
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    try:
        await fetch(engine, "SELECT 1")
        rows = await asyncio.gather(
            *(fetchrow(engine, "SELECT pg_sleep(0.05), $1::int AS n", n) for n in range(3))
        )
        assert [row["n"] for row in rows if row is not None] == [0, 1, 2]
        assert _pool(engine).checkedin() == 1
    finally:
        await engine.dispose()


async def test_an_idle_connection_that_was_invalidated_is_reconnected(
    engine: AsyncEngine,
) -> None:
    """It sits in the pool with no driver connection: taking it again connects anew (through
    the greenlet, with no coroutine left unawaited by the refused checkout before it)."""
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
    # The same database on a port nobody listens on, whether the URL names a port or a socket.
    url = (
        make_url(settings.require_database_url())
        .set(host="127.0.0.1", port=9)
        .difference_update_query(["host"])
    )
    unreachable = url.render_as_string(hide_password=False)
    engine = create_engine(settings.model_copy(update={"database_url": unreachable}))
    try:
        with pytest.raises(DatabaseUnavailable):
            await fetch(engine, "SELECT 1")
    finally:
        await engine.dispose()
