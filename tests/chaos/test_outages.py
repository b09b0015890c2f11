"""Redis or PostgreSQL goes away and comes back: clear 503s meanwhile, then everything resumes.

Neither the gateway nor the worker is restarted: both must notice the dependency is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_sessionmaker
from shared.keys import in_progress_key, queue_key
from shared.models import Job
from shared.settings import Settings
from tests.chaos.conftest import GatewayFactory, SpawnWorker
from tests.chaos.outages import EmbeddedPostgres, RedisServer, TcpProxy, database_address
from tests.factories import auth, make_tenant, submit, wait_for_status

PROBLEM_JSON = "application/problem+json"
CONNECT_TIMEOUT_SECONDS = 1.5
POOL_TIMEOUT_SECONDS = 1.5


def assert_unavailable(response: httpx.Response, *, code: str, naming: str) -> None:
    """A 503 problem document with `Retry-After` whose detail names the dependency."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"] == f"/problems/{code}"
    assert naming.lower() in problem["detail"].lower()


async def submit_when_back(http: httpx.AsyncClient, token: str, *, timeout: float) -> Any:
    """Submit until the gateway accepts again (it was not restarted), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        response = await http.post(
            "/jobs/echo", json={"args": {"message": "back"}}, headers=auth(token)
        )
        if response.status_code == 202:
            return response.json()
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, f"still {response.status_code} after {timeout} s"


async def test_redis_outage_is_503_then_resumes_by_itself(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    redis_server: RedisServer,
    spawn_worker: SpawnWorker,
) -> None:
    http = await make_gateway(redis_url=redis_server.url)
    worker = spawn_worker(redis_url=redis_server.url)
    _, token = await make_tenant(sessionmaker)
    before = await submit(http, token, "echo", {"message": "before"})
    await wait_for_status(http, token, before["id"], "succeeded", timeout=15)

    redis_server.stop()
    response = await http.post("/jobs/echo", json={"args": {"message": "x"}}, headers=auth(token))
    assert_unavailable(response, code="queue-unavailable", naming="Redis")
    async with sessionmaker() as session:
        assert (
            await session.scalar(select(func.count()).select_from(Job)) == 1
        )  # nothing half-stored
    ready = await http.get("/readyz")
    assert_unavailable(ready, code="not-ready", naming="redis")
    assert ready.json()["checks"]["postgresql"] == "ok"

    redis_server.start()  # same port, empty: as after a restart without persistence
    after = await submit_when_back(http, token, timeout=5)
    done = await wait_for_status(http, token, after["id"], "succeeded", timeout=10)
    assert done["attempts"] == 1
    assert (await http.get("/readyz")).status_code == 200
    assert worker.is_running()


async def _wait_until_due_on_queue(redis: Redis, job_id: str, *, timeout: float) -> None:
    """Wait until the delayed job has been moved onto its queue (it is due)."""
    deadline = time.monotonic() + timeout
    while await redis.zscore(queue_key("default"), job_id) is None:
        assert time.monotonic() < deadline, "the delayed job never became due"
        await asyncio.sleep(0.05)


async def _assert_not_picked(redis: Redis, job_id: str, *, seconds: float) -> None:
    """For `seconds`, the job stays on its queue and no worker holds it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await redis.zscore(queue_key("default"), job_id) is not None
        assert not await redis.exists(in_progress_key(job_id)), "a worker took the job"
        await asyncio.sleep(0.05)


@pytest.fixture
async def embedded_sessionmaker(
    embedded_postgres: EmbeddedPostgres, settings: Settings
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.model_copy(update={"database_url": embedded_postgres.url}))
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_postgresql_outage_pauses_workers_and_is_503_then_resumes(
    make_gateway: GatewayFactory,
    embedded_postgres: EmbeddedPostgres,
    embedded_sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    spawn_worker: SpawnWorker,
) -> None:
    http = await make_gateway(database_url=embedded_postgres.url)
    worker = spawn_worker(database_url=embedded_postgres.url)
    _, token = await make_tenant(embedded_sessionmaker)
    first = await submit(http, token, "echo", {"message": "before"})
    await wait_for_status(http, token, first["id"], "succeeded", timeout=15)
    # Becomes due while PostgreSQL is down: a worker must leave it on its queue.
    delayed = await submit(http, token, "echo", {"message": "due"}, {"delay_seconds": 2.5})

    embedded_postgres.stop()
    await worker.wait_for_log("health.database_down")
    for response in (
        await http.post("/jobs/echo", json={"args": {"message": "x"}}, headers=auth(token)),
        await http.get(f"/jobs/{first['id']}", headers=auth(token)),
    ):
        assert_unavailable(response, code="database-unavailable", naming="PostgreSQL")
    ready = await http.get("/readyz")
    assert_unavailable(ready, code="not-ready", naming="postgresql")
    assert ready.json()["checks"]["redis"] == "ok"

    await _wait_until_due_on_queue(redis, delayed["id"], timeout=5)
    await _assert_not_picked(redis, delayed["id"], seconds=1.5)

    embedded_postgres.start()
    after = await submit_when_back(http, token, timeout=10)
    for job in (delayed, after):
        done = await wait_for_status(http, token, job["id"], "succeeded", timeout=10)
        assert done["attempts"] == 1
    assert (await http.get("/readyz")).status_code == 200
    assert worker.is_running()


@pytest.fixture
async def database_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test database's server (a port or a socket), listening."""
    proxy = TcpProxy(database_address(settings.require_database_url()))
    await proxy.open()
    yield proxy
    await proxy.close()


async def test_a_hung_database_gets_503s_within_the_timeouts_not_hung_requests(
    make_gateway: GatewayFactory,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    database_proxy: TcpProxy,
) -> None:
    """The server accepts connections and never answers; requests beyond the pool size too."""
    # No `host` query left behind: asyncpg would take it over the proxy's address.
    proxied = (
        make_url(settings.require_database_url())
        .set(host="127.0.0.1", port=database_proxy.port)
        .difference_update_query(["host"])
    )
    http = await make_gateway(
        database_url=proxied.render_as_string(hide_password=False),
        db_connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        db_pool_timeout_seconds=POOL_TIMEOUT_SECONDS,
    )
    _, token = await make_tenant(sessionmaker)
    job = await submit(http, token, "echo", {"message": "before"})

    await database_proxy.close()
    database_proxy.is_black_hole = True
    await database_proxy.open()
    started = time.monotonic()
    many = settings.db_pool_size + settings.db_max_overflow + 5
    responses = await asyncio.gather(
        *(http.get(f"/jobs/{job['id']}", headers=auth(token)) for _ in range(many)),
        http.get("/readyz"),
    )
    elapsed = time.monotonic() - started
    *reads, ready = responses
    for response in reads:
        assert_unavailable(response, code="database-unavailable", naming="PostgreSQL")
    assert_unavailable(ready, code="not-ready", naming="postgresql")
    # Bounded by the timeouts, not by the server: at worst a request waits for a pool slot,
    # then for its connection attempt (with the defaults, 5 s + 5 s).
    assert elapsed < CONNECT_TIMEOUT_SECONDS + POOL_TIMEOUT_SECONDS + 1, elapsed

    database_proxy.is_black_hole = False
    response = await http.get(f"/jobs/{job['id']}", headers=auth(token))
    assert response.status_code == 200, response.text
