"""The SQLAlchemy engine and session factory, bounded so a hung database cannot hang callers."""

from __future__ import annotations

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
            "timeout": settings.db_connect_timeout_seconds,
            "command_timeout": settings.db_statement_timeout_seconds + 5,
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(statement_timeout_ms),
            },
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def libpq_url(database_url: str) -> str:
    """The same database as a plain `postgresql://` URL, for asyncpg and command-line tools."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
