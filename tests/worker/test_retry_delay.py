"""The retry delay job code chooses (`RetryableJobError(delay_seconds=...)`), on a real worker.

`echo`'s function is swapped for one that raises; `echo` keeps its own backoff (60 s, less at
most 20 % jitter), so a retry within seconds was scheduled by the job's chosen delay.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import ECHO, Backoff, EchoResult
from shared.errors import RetryableJobError
from shared.settings import Settings
from tests.bindings import start_worker_with_binding
from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_job
from worker.attempt import JobFailure
from worker.context import JobContext

CHOSEN_SECONDS = 0.5
LATENESS_SECONDS = 1.5
"""How late a due retry may start on a busy host (the worker polls every 0.02 s)."""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _start_echo_raising(
    settings: Settings, start_worker: WorkerFactory, delay_seconds: float | None, *, times: int
) -> None:
    """A real worker whose `echo` fails its first `times` attempts choosing `delay_seconds`."""

    async def busy(job: JobContext, args: Any) -> EchoResult:
        if job.attempt <= times:
            raise RetryableJobError("busy", delay_seconds=delay_seconds)
        return EchoResult(message=args.message)

    await start_worker_with_binding(
        settings, start_worker, "echo", lambda binding: replace(binding, function=busy)
    )


class TestRetryDelaySeconds:
    def test_a_chosen_delay_replaces_the_backoff_under_a_breakers_floor(self) -> None:
        backoff = Backoff(base_seconds=60, jitter=0)
        chosen = JobFailure("RetryableJobError", "busy", is_retryable=True, chosen_delay_seconds=2)
        assert chosen.retry_delay_seconds(backoff, attempt=3) == 2
        assert JobFailure("E", "m", is_retryable=True).retry_delay_seconds(backoff, 3) == 240
        floored = JobFailure("CircuitOpenError", "open", is_retryable=True, retry_after_seconds=5)
        assert floored.retry_delay_seconds(backoff, attempt=1) == 60
        assert floored.retry_delay_seconds(Backoff(base_seconds=1, jitter=0), 1) == 5


class TestChosenDelayOnAWorker:
    async def test_the_retry_is_due_and_runs_after_the_chosen_delay(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        await _start_echo_raising(settings, start_worker, CHOSEN_SECONDS, times=1)
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert (done["status"], done["attempts"], done["result"]) == (
            "succeeded", 2, {"message": "hi"},
        )  # fmt: skip
        due = _at(done["scheduled_at"])  # the retry's time, kept once it started
        assert CHOSEN_SECONDS <= (due - _at(done["created_at"])).total_seconds() < 5
        assert timedelta(0) <= _at(done["started_at"]) - due < timedelta(seconds=LATENESS_SECONDS)

    async def test_a_delay_of_zero_retries_at_once(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        await _start_echo_raising(settings, start_worker, 0, times=2)
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed", timeout=5)
        assert (done["status"], done["attempts"]) == ("succeeded", 3)

    async def test_a_chosen_delay_uses_up_tries_like_any_retry(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
    ) -> None:
        await _start_echo_raising(settings, start_worker, 0, times=10)
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"}, {"max_tries": 2})

        done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
        assert (done["status"], done["attempts"]) == ("failed", 2)
        assert done["error"] == {"type": "RetryableJobError", "message": "busy"}

    @pytest.mark.parametrize("refused", [-1.0, float("nan")])
    async def test_a_refused_delay_is_the_jobs_error_and_the_backoff_applies(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        start_worker: WorkerFactory,
        refused: float,
    ) -> None:
        await _start_echo_raising(settings, start_worker, refused, times=1)
        _, token = await make_tenant(sessionmaker)
        job = await submit(client, token, "echo", {"message": "hi"})

        retrying = await poll_job(
            client,
            token,
            job["id"],
            lambda job: job["attempts"] == 1 and job["status"] == "retrying",
        )
        assert retrying["error"]["type"] == "ValueError"
        assert "delay_seconds must be from 0 to" in retrying["error"]["message"]
        wait = _at(retrying["scheduled_at"]) - _at(retrying["started_at"])
        base = ECHO.backoff.base_seconds
        assert base * (1 - ECHO.backoff.jitter) <= wait.total_seconds() <= base + 1
