"""Testing helpers for job authors: run a job function in-process, or a real worker in pytest.

In-process (no PostgreSQL, no Redis): `await run_in_process(RESIZE, {"url": ..., "width": 64})`
validates the args against the contract, calls the function bound with `@implements` with a
fake context (progress is recorded on it), and validates the result, as the worker does.

With real parts: add `pytest_plugins = ["worker.testing"]` to your top-level `conftest.py`
and override `jobgate_settings` to point at a test database (migrated) and Redis. The
`jobgate_worker` fixture then runs a real worker, on every queue, in the test's event loop:
jobs submitted over HTTP or with `Jobgate` (`shared.python_api`) really run.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import REGISTRY, Contract, JobType, load_contracts
from shared.settings import Settings
from worker.binding import bound_function
from worker.context import JobContext
from worker.loop import WakeableWorker, stop_worker
from worker.mail import Mailer
from worker.settings import worker_options
from worker.tenant_data import TenantData

A = TypeVar("A", bound=Contract)
R = TypeVar("R", bound=Contract)


@contextlib.contextmanager
def declared(*job_types: JobType[Any, Any]) -> Iterator[None]:
    """Register job types (made with `JobType(...)`) for a block only, e.g. one test."""
    for job_type in job_types:
        REGISTRY.register(job_type)
    try:
        yield
    finally:
        for job_type in job_types:
            REGISTRY.unregister(job_type.name)


@dataclass
class Progress:
    """What a job function reported through `job.progress(...)`."""

    reports: list[tuple[int, int | None, str | None]] = field(default_factory=list)

    async def report(self, current: int, total: int | None, message: str | None) -> None:
        self.reports.append((current, total, message))


def fake_context(
    *,
    tenant_id: uuid.UUID | None = None,
    attempt: int = 1,
    max_tries: int = 3,
    progress: Progress | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    settings: Settings | None = None,
) -> JobContext:
    """The `JobContext` a worker would pass, without a worker.

    `job.data` needs `sessionmaker` (a test database) to answer; `job.mail` uses `settings`'
    SMTP server (default settings: localhost). Circuit breakers need Redis: not available here.
    """
    tenant = tenant_id or uuid.uuid4()
    settings = settings or Settings(env="test")
    return JobContext(
        job_id=uuid.uuid4(),
        tenant_id=tenant,
        attempt=attempt,
        max_tries=max_tries,
        worker_name="in-process",
        report=(progress or Progress()).report,
        data=TenantData(sessionmaker or async_sessionmaker(), tenant_id=tenant),
        mail=Mailer(settings),
    )


async def run_in_process(
    job_type: JobType[A, R], args: A | dict[str, Any], *, context: JobContext | None = None
) -> R:
    """Validate `args`, call the type's bound function, validate and return its result."""
    valid = job_type.args.model_validate(args)
    function = bound_function(job_type)
    outcome = await function(context or fake_context(), valid)
    return job_type.result.model_validate(outcome, from_attributes=True)


# The pytest plugin (`pytest_plugins = ["worker.testing"]`).


@pytest.fixture
def jobgate_settings() -> Settings:
    """The settings the worker runs with; override to point at your test database and Redis."""
    return Settings()


@pytest.fixture
async def jobgate_worker(jobgate_settings: Settings) -> AsyncIterator[list[Worker]]:
    """Real workers on every queue of the registered job types, stopped after the test."""
    registry = load_contracts(jobgate_settings.contract_modules)
    running: list[tuple[WakeableWorker, asyncio.Task[None]]] = []
    for queue in registry.queues():
        options = worker_options(jobgate_settings, queue=queue, registry=registry)
        worker = WakeableWorker(**options, handle_signals=False)
        running.append((worker, asyncio.create_task(worker.main())))
    yield [worker for worker, _ in running]
    for started, task in running:
        await stop_worker(started, task, grace_seconds=5)
