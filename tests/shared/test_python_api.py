"""Submitting from Python: the same durable job as `POST /jobs/{name}`, waited on for its result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import python_api
from shared.contracts import ECHO, FLAKY, EchoArgs, EchoResult
from shared.models import Job
from shared.python_api import JobDidNotSucceed, Jobgate
from shared.settings import Settings
from shared.status import JobStatus
from tests.conftest import WorkerFactory
from tests.factories import auth, make_tenant
from worker.settings import worker_name


@pytest.fixture
async def jobgate(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Jobgate]:
    await make_tenant(sessionmaker, "acme")
    async with Jobgate(settings, tenant="acme") as client:
        yield client


async def test_a_job_submitted_from_python_runs_and_is_the_tenants_job(
    jobgate: Jobgate, client: httpx.AsyncClient, start_worker: WorkerFactory
) -> None:
    await start_worker()
    handle = await jobgate.submit(ECHO, EchoArgs(message="hi", repeat=2), priority="critical")

    assert await handle.result(timeout=10) == EchoResult(message="hihi")
    job = await handle.job()
    assert (job.tenant_id, job.priority, job.attempts) == (handle.tenant_id, "critical", 1)


async def test_http_sees_the_same_job(
    jobgate: Jobgate,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, other_token = await make_tenant(sessionmaker, "globex")
    handle = await jobgate.submit(ECHO, {"message": "later"}, delay=timedelta(seconds=30))
    job = await handle.job()
    assert job.status == JobStatus.SCHEDULED
    assert job.scheduled_at is not None
    assert job.scheduled_at > datetime.now(UTC) + timedelta(seconds=25)
    seen = await client.get(f"/jobs/{handle.id}", headers=auth(other_token))
    assert seen.status_code == 404  # another tenant's key: not its job


async def test_options_and_args_are_validated_like_http_and_nothing_is_stored(
    jobgate: Jobgate, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    with pytest.raises(ValidationError, match="delay_seconds or run_at"):
        await jobgate.submit(ECHO, {"message": "x"}, delay=5, run_at=datetime.now(UTC))
    with pytest.raises(ValidationError, match="repeat"):
        await jobgate.submit(ECHO, {"message": "x", "repeat": 0})
    with pytest.raises(ValidationError, match="max_tries"):
        await jobgate.submit(ECHO, {"message": "x"}, max_tries=0)
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Job))).scalar_one() == 0


async def test_result_raises_for_a_failed_job_and_times_out_for_a_slow_one(
    jobgate: Jobgate, start_worker: WorkerFactory
) -> None:
    await start_worker()
    failing = await jobgate.submit(FLAKY, {"fail_times": 1, "permanent": True})
    with pytest.raises(JobDidNotSucceed) as failed:
        await failing.result(timeout=10)
    assert failed.value.status == JobStatus.FAILED
    assert failed.value.error is not None
    assert failed.value.error["type"] == "permanent"
    (attempt,) = await failing.attempts()
    assert (attempt.number, attempt.outcome) == (1, "failed")
    assert attempt.error is not None and attempt.error.type == "permanent"
    assert attempt.worker == worker_name()

    later = await jobgate.submit(ECHO, {"message": "x"}, delay=60)
    with pytest.raises(TimeoutError):
        await later.result(timeout=0.2)


async def test_job_type_methods_async_and_sync(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    await make_tenant(sessionmaker, "acme")
    await start_worker()
    python_api.configure(settings, tenant="acme")
    try:
        handle = await ECHO.submit({"message": "a"})
        assert (await handle.result(timeout=10)).message == "a"

        def flask_view() -> str:  # a caller without an event loop, in its own thread
            handle = ECHO.submit_sync({"message": "b", "repeat": 3})
            message = handle.result(timeout=10).message
            (attempt,) = handle.attempts()
            return f"{message} {attempt.outcome}"

        assert await asyncio.to_thread(flask_view) == "bbb succeeded"
    finally:
        await python_api.shutdown()
