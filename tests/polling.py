"""Waiting on conditions that are not terminal statuses (`running`, `retrying`, worker counters).

`tests.factories.wait_for_status` long-polls, which answers early only at terminal statuses;
these helpers re-check often instead, always against a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from shared.keys import RECONCILER_LOCK
from tests.factories import auth

POLL_INTERVAL_SECONDS = 0.02


async def poll_until(condition: Callable[[], bool], *, timeout: float = 5, what: str = "") -> None:
    """Re-check `condition` until it holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what or condition}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def poll_job(
    client: httpx.AsyncClient,
    token: str,
    job_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 5,
) -> dict[str, Any]:
    """Read the job (no long-poll) until `predicate` holds for it, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(f"/jobs/{job_id}", headers=auth(token))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if predicate(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never matched within {timeout} s: {job}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def reconciler_pass_began(redis: Redis, *, timeout: float = 10) -> None:
    """Wait until some worker's reconciler pass has begun (it holds the pass's lock for an
    interval): a worker runs one as it starts, its deadline sweep first."""
    deadline = time.monotonic() + timeout
    while not await redis.exists(RECONCILER_LOCK):
        if time.monotonic() > deadline:
            raise AssertionError(f"no reconciler pass began within {timeout} s")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
