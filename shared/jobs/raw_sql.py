"""Statements run straight on asyncpg, through a connection of the engine's own pool.

For the hot paths (a submit, the worker's status changes) SQLAlchemy's session costs more than
the statement: a greenlet hop per call, ORM bookkeeping, BEGIN/COMMIT. These run one
autocommitted statement on the driver underneath; the pool, its size and its timeouts stay
SQLAlchemy's (one connection budget per process).

JSON values go in as text (`json.dumps`): SQLAlchemy's asyncpg codecs for json/jsonb, set on
every pooled connection, take text; they hand results back already decoded.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentRefused
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool
from sqlalchemy.util.concurrency import greenlet_spawn

from shared.db_errors import describe_database_error
from shared.errors import DatabaseUnavailable

# What "the database did not answer" looks like from asyncpg; mapped to a 503 like the
# engine's errors. A statement that breaks a constraint is a bug, not an outage: it propagates.
UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # 57: the server shut the connection down (`pg_terminate_backend`, a restart), cannot
    # take connections yet, or cancelled the statement; 53: too many connections and the like.
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    # A connection left half-way through an error by its server going away refuses any
    # further statement ("cannot switch to state 12; another operation is in progress").
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def _idle_connection(engine: AsyncEngine) -> PoolProxiedConnection | None:
    """One of the pool's idle connections, taken without a greenlet; None if there is none.

    Taking a connection that is already open does no I/O, and `engine.raw_connection()` runs
    that same checkout inside a new greenlet, which cost a job 0.3 ms on its way from submit
    to start on the bench's VM (measured on the worker's claim, the two ways interleaved).
    When the pool has nothing idle (the checkout would connect or wait), or the idle one turns
    out to be closed (invalidated, the server restarted), SQLAlchemy refuses to do I/O here
    (MissingGreenlet) and gives back what it took; the caller then goes the greenlet way.
    """
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool) or pool.checkedin() == 0:
        return None
    try:
        return pool.connect()
    except MissingGreenlet:
        return None


async def fetch(engine: AsyncEngine, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run `sql` with positional `args` ($1, $2, ...) and return its rows.

    Outages come out as `DatabaseUnavailable`, and the connection is not handed out again.
    """
    # The pool's connection itself, not an `AsyncConnection` around it: that wrapper (two
    # objects, events, a second greenlet hop) added 0.2 ms to a statement made after an idle
    # spell on the bench's VM, twice on a job's way from submit to start. No SQLAlchemy
    # transaction is ever begun on it, so handing it back needs no I/O either.
    try:
        connection = _idle_connection(engine) or await engine.raw_connection()
    except (engine.dialect.loaded_dbapi.Error, *UNAVAILABLE) as exc:
        # Unwrapped here (`engine.connect()` would wrap a refusal in a `DBAPIError`).
        raise DatabaseUnavailable(describe_database_error(exc)) from exc
    try:
        driver: asyncpg.Connection = connection.driver_connection
        rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
    except ArgumentRefused:
        raise  # a value asyncpg cannot encode (an InterfaceError too): not an outage
    except UNAVAILABLE as exc:
        # SQLAlchemy did not see the failure: tell its pool not to hand this one out again.
        connection.invalidate(exc)
        raise DatabaseUnavailable(describe_database_error(exc)) from exc
    finally:
        await _hand_back(engine, connection)
    return rows


async def _hand_back(engine: AsyncEngine, connection: PoolProxiedConnection) -> None:
    """Return `connection` to the pool it came from.

    Kept by the pool, that needs no I/O. But an overflow connection handed back to a pool with
    `pool_size` idle ones already is closed there and then, which is I/O: outside a greenlet
    SQLAlchemy would refuse it (MissingGreenlet), log it and leave the socket to the garbage
    collector, so that one goes back through a greenlet.
    """
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool) and pool.checkedin() < pool.size():
        connection.close()
    else:
        await greenlet_spawn(connection.close)


async def fetchrow(engine: AsyncEngine, sql: str, *args: Any) -> asyncpg.Record | None:
    """`fetch`, for a statement that returns at most one row."""
    rows = await fetch(engine, sql, *args)
    return rows[0] if rows else None
