"""Statements run straight on asyncpg, through a connection of the engine's own pool.

For the hot paths (a submit, the worker's claim and success) SQLAlchemy's session costs more
than the statement: a greenlet hop per call, ORM bookkeeping, BEGIN/COMMIT. These run one
autocommitted statement on the driver underneath; the pool, its size and its timeouts stay
SQLAlchemy's (one connection budget per process).

JSON values go in as text (`json.dumps`): SQLAlchemy's asyncpg codecs for json/jsonb, set on
every pooled connection, take text; they hand results back already decoded.

Rows of values (`row_source`, `row_parameters`): for several rows, one array per column
(`unnest($1::uuid[], ...)`) keeps one statement text for any number of rows, so asyncpg
prepares it once. One row gets plain parameters and a plan made for one row: a plan made for
arrays of unknown length may scan a small job table instead of looking the row up by its key.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    Taking a connection that is already open does no I/O, while `engine.raw_connection()` runs
    that same checkout inside a new greenlet, a cost on every hot statement. When the pool has
    nothing idle (the checkout would connect or wait), or the idle one turns out to be closed
    (invalidated, the server restarted), SQLAlchemy refuses to do I/O here (MissingGreenlet)
    and gives back what it took; the caller then goes the greenlet way.
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
    # The pool's connection itself, not an `AsyncConnection` around it (two objects, events,
    # a second greenlet hop). No SQLAlchemy transaction is ever begun on it, so handing it
    # back needs no I/O either.
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


def row_source(types: Sequence[str], *, first: int, one_row: bool) -> str:
    """A FROM item of the rows in parameters `$first`, `$first + 1`, ... (one per column).

    Give it a column alias list: `{row_source(...)} AS taken (tenant_id, id)`. The types are
    SQL type names, written into the text: pass only names of our own.
    """
    parameters = [f"${number}::{name}" for number, name in enumerate(types, start=first)]
    if one_row:
        return f"(SELECT {', '.join(parameters)})"
    return f"unnest({', '.join(f'{parameter}[]' for parameter in parameters)})"


def row_parameters(columns: Sequence[list[Any]], *, one_row: bool) -> list[Any]:
    """The parameters for `row_source` (given the same `one_row`): each column's list of
    values, or for one row each column's value."""
    if one_row:
        return [column[0] for column in columns]
    return list(columns)
