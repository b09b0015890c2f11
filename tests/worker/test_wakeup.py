"""An idle worker waits on its wake list and takes due jobs in the same round trip.

`WakeableWorker` sends BLPOP and the take together; Redis runs the take as the BLPOP returns,
so a woken worker holds its jobs (their in-progress keys set) before its next poll starts
them. Jobs it then may not start must be given back at once, not held for a lease's length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.keys import wake_key
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant, submit, wait_for_status

# Far longer than any wait below: only a wake token can make these workers look early.
POLL_DELAY_SECONDS = 3.0


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what}")
        await asyncio.sleep(0.01)


async def _a_worker_blocks_on_its_wake_list(redis: Redis) -> None:
    """Wait until a client of this test's Redis database sits in BLPOP (the idle worker)."""
    database = redis.connection_pool.connection_kwargs.get("db", 0)

    async def blocked() -> bool:
        clients = await redis.client_list()
        return any(c["cmd"] == "blpop" and int(c["db"]) == database for c in clients)

    await _until(blocked, "the worker waits on its wake list")


@pytest.fixture
async def token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    _, token = await make_tenant(sessionmaker)
    return token


@pytest.fixture
async def idle_worker(redis: Redis, start_worker: WorkerFactory) -> Worker:
    """A worker with a long poll delay, already waiting on its wake list."""
    worker = await start_worker(poll_delay=POLL_DELAY_SECONDS)
    await _a_worker_blocks_on_its_wake_list(redis)
    return worker


async def test_an_idle_worker_starts_a_new_job_without_waiting_for_its_poll(
    client: httpx.AsyncClient, token: str, idle_worker: Worker
) -> None:
    job = await submit(client, token, "echo", {"message": "hi"})

    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=1)
    assert done["result"] == {"message": "hi"}


async def test_a_job_taken_while_picking_is_paused_is_given_back_at_once(
    client: httpx.AsyncClient,
    token: str,
    redis: Redis,
    idle_worker: Worker,
    start_worker: WorkerFactory,
) -> None:
    """As when the health monitor pauses a worker: its wait still ends with a take."""
    idle_worker.allow_pick_jobs = False

    job = await submit(client, token, "echo", {"message": "later"})

    # Redis ran the take as the BLPOP returned, before it answered the submit's script.
    tokens: int = await redis.llen(wake_key("default"))  # type: ignore[misc]
    assert tokens == 0, "the paused worker did not wake"
    lease = in_progress_key_prefix + job["id"]

    async def lease_given_back() -> bool:
        return not await redis.exists(lease)

    # The paused worker woke and took the job (a lease of 30 s), then let it go unstarted.
    await _until(lease_given_back, "the paused worker gives the job's lease back")
    response = await client.get(f"/jobs/{job['id']}", headers=auth(token))
    assert response.json()["status"] == "queued"
    # Another worker takes it at once (its first poll), not after the lease would have lapsed.
    await start_worker(poll_delay=POLL_DELAY_SECONDS)
    done = await wait_for_status(client, token, job["id"], "succeeded", timeout=3)
    assert done["attempts"] == 1
