"""The helpers job authors test with: a job function in-process, and a real worker fixture."""

from __future__ import annotations

import pytest
from arq.worker import Worker
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ECHO, FLAKY, SLEEP, EchoResult
from shared.errors import RetryableJobError
from shared.python_api import Jobgate
from shared.settings import Settings
from tests.factories import make_tenant
from worker import testing
from worker.testing import Progress, fake_context, run_in_process

# What `pytest_plugins = ["worker.testing"]` in a job author's root conftest provides.
jobgate_worker = testing.jobgate_worker


class TestRunInProcess:
    async def test_validates_calls_and_returns_the_typed_result(self) -> None:
        assert await run_in_process(ECHO, {"message": "ab", "repeat": 2}) == EchoResult(
            message="abab"
        )

    async def test_progress_is_recorded_on_the_fake_context(self) -> None:
        progress = Progress()
        result = await run_in_process(
            SLEEP, {"seconds": 0.01, "steps": 2}, context=fake_context(progress=progress)
        )
        assert result.slept >= 0.01
        assert progress.reports == [
            (1, 2, "slept 1 of 2 steps"),
            (2, 2, "slept 2 of 2 steps"),
        ]

    async def test_bad_args_never_reach_the_function(self) -> None:
        with pytest.raises(ValidationError):
            await run_in_process(ECHO, {"message": "x", "repeat": 0})

    async def test_the_attempt_number_is_the_contexts(self) -> None:
        with pytest.raises(RetryableJobError):
            await run_in_process(FLAKY, {"fail_times": 1}, context=fake_context(attempt=1))
        result = await run_in_process(FLAKY, {"fail_times": 1}, context=fake_context(attempt=2))
        assert result.attempts == 2


@pytest.fixture
def jobgate_settings(settings: Settings) -> Settings:
    """What a job author's conftest does: point the plugin at the test database and Redis."""
    return settings


async def test_the_jobgate_worker_fixture_runs_real_jobs(
    jobgate_worker: list[Worker],
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await make_tenant(sessionmaker, "acme")
    assert {worker.queue_name for worker in jobgate_worker} >= {
        "jobgate:queue:default",
        "jobgate:queue:email",
    }
    async with Jobgate(settings, tenant="acme") as jobgate:
        handle = await jobgate.submit(ECHO, {"message": "real"})
        assert (await handle.result(timeout=10)).message == "real"
