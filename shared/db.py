"""The SQLAlchemy engine and session factory, bounded so a hung database cannot hang callers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import Settings


def create_engine(settings: Settings, *, application_name: str = "jobgate") -> AsyncEngine:
    """An asyncpg engine with pool limits, connect timeout and statement timeout from settings."""
    statement_timeout_ms = int(settings.db_statement_timeout_seconds * 1000)
    return create_async_engine(
        settings.require_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=False,  # a dead connection fails its query and is replaced; no extra trip
        # Last in, first out: an idle spell reuses the connection (and server process) used
        # last, still warm, rather than cycling through every pooled one.
        pool_use_lifo=True,
        connect_args={
            # SQLAlchemy's asyncpg dialect connects through this, with the arguments it would
            # give `asyncpg.connect` (see `_connect_when_awaited`).
            "async_creator_fn": _connect_when_awaited,
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds + 5,
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(statement_timeout_ms),
            },
        },
    )


class _Connecting:
    """A connect that starts when awaited, and leaves nothing behind if it never is."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        connection: asyncpg.Connection = yield from self._connect().__await__()
        return connection


def _connect_when_awaited(*args: Any, **kwargs: Any) -> _Connecting:
    """`asyncpg.connect(*args, **kwargs)`, its coroutine made only once it is awaited.

    `shared.jobs.raw_sql` checks connections out of the pool without a greenlet, and SQLAlchemy
    refuses such a checkout when it finds the connection has to be made anew (MissingGreenlet),
    closing what it was about to await. With `asyncpg.connect` itself that is an outer coroutine
    holding asyncpg's, which would then be dropped unawaited: a RuntimeWarning each time.
    """
    return _Connecting(functools.partial(asyncpg.connect, *args, **kwargs))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def libpq_url(database_url: str) -> str:
    """The same database as a plain `postgresql://` URL, for asyncpg and command-line tools."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
