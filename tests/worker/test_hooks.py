"""Lifecycle hooks (on_success / on_retry / on_failure) run after the outcome is recorded."""

from __future__ import annotations

from dataclasses import replace

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import Settings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_until
from worker.binding import Hooks
from worker.context import JobContext, JobOutcome


async def _start_with_hooks(settings: Settings, start_worker: WorkerFactory, hooks: Hooks) -> None:
    """A real worker whose `flaky` binding carries `hooks`."""
    await start_worker_with_binding(
        settings, start_worker, "flaky", lambda binding: replace(binding, hooks=hooks)
    )


class TestHooks:
    async def test_retry_then_success_calls_on_retry_then_on_success(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        calls: list[tuple[str, JobOutcome, int]] = []

        async def record(job: JobContext, outcome: JobOutcome) -> None:
            calls.append((outcome.status, outcome, job.attempt))

        hooks = Hooks(on_success=record, on_retry=record, on_failure=record)
        await _start_with_hooks(settings, start_worker, hooks)
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "flaky", {"fail_times": 1})
        await wait_for_status(client, token, job["id"], "succeeded")
        await poll_until(lambda: len(calls) == 2, what="both hooks ran")
        (retry_status, retry, retry_attempt), (success_status, success, success_attempt) = calls
        assert (retry_status, retry_attempt) == ("retrying", 1)
        assert retry.error is not None and retry.error["type"] == "RetryableJobError"
        assert retry.retry_at is not None
        assert (success_status, success_attempt) == ("succeeded", 2)
        assert success.result == {"attempts": 2}

    async def test_permanent_failure_calls_on_failure(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        failures: list[JobOutcome] = []

        async def on_failure(job: JobContext, outcome: JobOutcome) -> None:
            failures.append(outcome)

        await _start_with_hooks(settings, start_worker, Hooks(on_failure=on_failure))
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
        await wait_for_status(client, token, job["id"], "failed")
        await poll_until(lambda: len(failures) == 1, what="on_failure ran")
        assert failures[0].error is not None and failures[0].error["type"] == "permanent"

    async def test_a_failing_hook_does_not_change_the_outcome(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        async def explode(job: JobContext, outcome: JobOutcome) -> None:
            raise RuntimeError("hook bug")

        await _start_with_hooks(settings, start_worker, Hooks(on_success=explode))
        _, token = await make_tenant(sessionmaker)
        first = await submit(client, token, "flaky", {"fail_times": 0})
        done = await wait_for_status(client, token, first["id"], "succeeded")
        assert done["result"] == {"attempts": 1}
        # The worker is still healthy and runs the next job.
        second = await submit(client, token, "flaky", {"fail_times": 0})
        await wait_for_status(client, token, second["id"], "succeeded")
