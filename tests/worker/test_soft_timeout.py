"""The soft time limit interrupts `soft_limit()` blocks before the hard limit stops the job."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import SleepArgs, SleepResult
from shared.settings import Settings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from worker.binding import Binding
from worker.context import JobContext, SoftTimeLimitExceeded

GRACE_SECONDS = 0.4


async def tidy_sleep(job: JobContext, args: SleepArgs) -> SleepResult:
    """Sleeps inside the soft limit; on it, cleans up and reports how far it got."""
    started = time.monotonic()
    try:
        async with job.soft_limit():
            await asyncio.sleep(args.seconds)
    except SoftTimeLimitExceeded:
        await asyncio.sleep(0.05)  # the clean-up, well inside the grace period
    return SleepResult(slept=round(time.monotonic() - started, 3))


async def stubborn_sleep(job: JobContext, args: SleepArgs) -> SleepResult:
    """Ignores the soft limit; the hard limit must still stop it."""
    await asyncio.sleep(args.seconds)
    return SleepResult(slept=args.seconds)


async def _start_with_sleep(settings: Settings, start_worker: WorkerFactory, function: Any) -> None:
    def with_soft_limit(binding: Binding) -> Binding:
        # `sleep` as a type declaring soft = hard - GRACE_SECONDS, run by `function`.
        hard = binding.job_type.timeout_seconds
        soft_type = replace(binding.job_type, soft_timeout_seconds=hard - GRACE_SECONDS)
        return replace(binding, job_type=soft_type, function=function)

    await start_worker_with_binding(settings, start_worker, "sleep", with_soft_limit)


async def test_job_cleans_up_at_the_soft_limit_and_succeeds(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    await _start_with_sleep(settings, start_worker, tidy_sleep)
    _, token = await make_tenant(sessionmaker)
    # Hard limit 1 s for this submit; the type's grace (0.4 s) puts the soft limit at 0.6 s.
    job = await submit(client, token, "sleep", {"seconds": 30}, {"timeout_seconds": 1.0})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert 0.5 <= done["result"]["slept"] < 1.0


async def test_job_ignoring_the_soft_limit_is_stopped_by_the_hard_one(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    start_worker: WorkerFactory,
) -> None:
    await _start_with_sleep(settings, start_worker, stubborn_sleep)
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "sleep", {"seconds": 30}, {"timeout_seconds": 1.0})
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout"
