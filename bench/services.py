"""PostgreSQL and Redis for the bench: the ones named in the environment, else local, else embedded.

`JOBGATE_BENCH_DATABASE_URL` names a server (its database is only used to connect); the bench
creates its own database there (`--database-name`, default `jobgate_bench`), migrates it and
drops it at the end. `JOBGATE_BENCH_REDIS_URL` names a Redis database the bench may flush
(default db 13). When a variable is unset and the local default does not answer, an embedded
server is started, as `jobgate dev` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from cli.embedded import embedded_services
from cli.migrate import upgrade
from shared.db import create_engine, create_sessionmaker, libpq_url
from shared.settings import Settings
from shared.tenants.tenancy import create_tenant

DATABASE_URL_VARIABLE = "JOBGATE_BENCH_DATABASE_URL"
REDIS_URL_VARIABLE = "JOBGATE_BENCH_REDIS_URL"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
BENCH_TENANT = "bench"

BARE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_bare_job (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    args jsonb NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

# Finished echo jobs with UUIDv7-shaped ids (48-bit millisecond prefix, version 7) a day old,
# so they sort like real older jobs; they expire tomorrow, so nothing purges them mid-run.
SEED_JOBS_SQL = """
INSERT INTO job (id, tenant_id, name, queue, priority, status, args, result, attempts,
                 max_tries, timeout_seconds, labels, created_at, started_at, finished_at,
                 expires_at)
SELECT overlay(overlay(md5(g::text || random()::text)
                       placing lpad(to_hex(ms), 12, '0') from 1 for 12)
               placing '7' from 13 for 1)::uuid,
       $1, 'echo', 'default', 'default', 'succeeded', '{"message": "seed", "repeat": 1}',
       '{"message": "seed"}', 1, 3, 30, '{}', to_timestamp(ms / 1000.0),
       to_timestamp(ms / 1000.0), to_timestamp(ms / 1000.0), now() + interval '1 day'
FROM (SELECT g, (extract(epoch FROM now()) * 1000)::bigint - 86400000 + g AS ms
      FROM generate_series($2::int, $3::int) AS g) AS seeds
"""


@dataclass(frozen=True)
class Endpoints:
    """Where the servers are: a server URL for PostgreSQL, a flushable Redis database."""

    server_url: str
    redis_url: str
    origin: str
    """`environment`, `local` or `embedded`, for the report."""


async def _database_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(libpq_url(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _redis_answers(url: str) -> bool:
    client: Redis = Redis.from_url(url, socket_connect_timeout=3)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def endpoints() -> AsyncIterator[Endpoints]:
    """The servers to use; embedded ones live as long as the block."""
    database_url = os.environ.get(DATABASE_URL_VARIABLE)
    redis_url = os.environ.get(REDIS_URL_VARIABLE)
    origin = "environment" if database_url and redis_url else "local"
    if database_url is None and await _database_answers(DEFAULT_DATABASE_URL):
        database_url = DEFAULT_DATABASE_URL
    if redis_url is None and await _redis_answers(DEFAULT_REDIS_URL):
        redis_url = DEFAULT_REDIS_URL
    if database_url and redis_url:
        yield Endpoints(server_url=database_url, redis_url=redis_url, origin=origin)
        return
    with (
        tempfile.TemporaryDirectory(prefix="jobgate-bench-") as data_dir,
        embedded_services(
            Path(data_dir), need_database=database_url is None, need_redis=redis_url is None
        ) as embedded,
    ):
        redis = redis_url or f"{embedded.redis_url}?db=13"
        database = database_url or embedded.database_url
        assert database is not None  # noqa: S101 (embedded_services filled the gap)
        yield Endpoints(server_url=database, redis_url=redis, origin="embedded")


def database_url_for(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name`, migrate it; returns its URL."""
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = database_url_for(server_url, name)
    await asyncio.to_thread(upgrade, url)
    async with connect(url) as connection:
        await connection.execute(BARE_TABLE_SQL)
    return url


async def drop_database(server_url: str, name: str) -> None:
    """Drop the bench's database."""
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(server_url: str, statement: str) -> None:
    async with connect(server_url) as connection:
        await connection.execute(statement)


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for the bench's own SQL."""
    connection = await asyncpg.connect(libpq_url(url), timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


async def create_bench_tenant(database_url: str, redis_url: str) -> tuple[str, str]:
    """The bench tenant's id and an API key for it (all scopes)."""
    settings = Settings(database_url=database_url, redis_url=redis_url)
    engine = create_engine(settings, application_name="jobgate-bench")
    try:
        async with create_sessionmaker(engine)() as session:
            tenant, new_key = await create_tenant(session, name=BENCH_TENANT)
            return str(tenant.id), new_key.token
    finally:
        await engine.dispose()


async def reset_jobs(database_url: str, redis_url: str) -> None:
    """Empty the job table and the bench's Redis database."""
    async with connect(database_url) as connection:
        await connection.execute("TRUNCATE job, bench_bare_job CASCADE")
    await flush_redis(redis_url)


async def flush_redis(redis_url: str) -> None:
    """FLUSHDB on the bench's own Redis database."""
    client: Redis = Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def seed_jobs_to(database_url: str, tenant_id: str, *, total: int) -> int:
    """Add finished jobs until the table holds `total` rows; ANALYZE; returns the row count.

    Then a CHECKPOINT (where the role may), so the seeding's pages reach the disk now and not
    during the load measured next, whose commits would wait behind them.
    """
    async with connect(database_url) as connection:
        present: int = await connection.fetchval("SELECT count(*) FROM job")
        if present < total:
            await connection.execute(SEED_JOBS_SQL, tenant_id, present + 1, total)
        await connection.execute("ANALYZE job")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
        count: int = await connection.fetchval("SELECT count(*) FROM job")
        return count


async def count_jobs(database_url: str, tenant_id: str, status: str) -> int:
    """How many of the tenant's jobs have `status`."""
    async with connect(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM job WHERE tenant_id = $1 AND status = $2", tenant_id, status
        )
        return count
