"""Job metrics a worker records: one count per outcome where it happens, run time, queue wait.

The workers here run in the test process, so their metrics are the default registry's; each
test compares before and after (other tests' workers count into the same registry).
"""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import WorkerFactory
from tests.factories import make_tenant, submit, wait_for_status
from tests.polling import poll_job, poll_until


class Counts:
    """Sample values at the start of a test; `delta` tells how much they grew since."""

    def __init__(self) -> None:
        self._start: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def _now(self, name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def remember(self, name: str, **labels: str) -> None:
        self._start[(name, tuple(sorted(labels.items())))] = self._now(name, labels)

    def delta(self, name: str, **labels: str) -> float:
        return self._now(name, labels) - self._start[(name, tuple(sorted(labels.items())))]


async def test_each_outcome_is_counted_once_by_type_queue_and_error(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    counts = Counts()
    echo = {"job_type": "echo", "queue": "default"}
    flaky = {"job_type": "flaky", "queue": "default"}
    counts.remember("jobgate_jobs_succeeded_total", **echo)
    counts.remember("jobgate_jobs_succeeded_total", **flaky)
    counts.remember("jobgate_jobs_retried_total", **flaky, error_type="RetryableJobError")
    counts.remember("jobgate_jobs_failed_total", **flaky, error_type="permanent")
    counts.remember("jobgate_job_run_seconds_count", job_type="flaky")
    await start_worker()
    done = await submit(client, token, "echo", {"message": "x"})
    retried = await submit(client, token, "flaky", {"fail_times": 1})
    failed = await submit(client, token, "flaky", {"fail_times": 1, "permanent": True})
    await wait_for_status(client, token, done["id"], "succeeded")
    await wait_for_status(client, token, failed["id"], "failed")
    await wait_for_status(client, token, retried["id"], "succeeded")
    # A job's counters move once its outcome is committed, so a reader can see the row a
    # moment before them (successes are committed in groups): wait for the last of them.
    await poll_until(
        lambda: (
            counts.delta("jobgate_job_run_seconds_count", job_type="flaky") >= 3
            and counts.delta("jobgate_jobs_succeeded_total", **flaky) >= 1
            and counts.delta("jobgate_jobs_succeeded_total", **echo) >= 1
        ),
        what="the counters of every outcome",
    )

    assert counts.delta("jobgate_jobs_succeeded_total", **echo) == 1
    assert counts.delta("jobgate_jobs_succeeded_total", **flaky) == 1
    assert counts.delta("jobgate_jobs_retried_total", **flaky, error_type="RetryableJobError") == 1
    assert counts.delta("jobgate_jobs_failed_total", **flaky, error_type="permanent") == 1
    assert counts.delta("jobgate_job_run_seconds_count", job_type="flaky") == 3  # attempts


async def test_queue_wait_runs_from_submit_to_start(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_worker: WorkerFactory,
) -> None:
    _, token = await make_tenant(sessionmaker)
    counts = Counts()
    labels = {"job_type": "echo"}
    counts.remember("jobgate_job_queue_wait_seconds_count", **labels)
    counts.remember("jobgate_job_queue_wait_seconds_sum", **labels)
    job = await submit(client, token, "echo", {"message": "x"})
    await asyncio.sleep(0.5)  # nobody takes it meanwhile: this is the wait measured
    await start_worker()
    found = await poll_job(client, token, job["id"], lambda found: found["status"] == "succeeded")
    assert found["started_at"] is not None
    assert counts.delta("jobgate_job_queue_wait_seconds_count", **labels) == 1
    assert 0.5 <= counts.delta("jobgate_job_queue_wait_seconds_sum", **labels) < 5
