"""A job past its start deadline ends `expired` without running, under both worker runners:
picked up late (a paused queue resumed after the deadline), or delivered again after its
worker was killed and the deadline passed meanwhile.

Its code must not run: the jobs are `record_run` (`tests.e2e.run_log_contract`), which leaves
a line with its job id in the worker's own file each time it runs. The workers load that type
as a deployment loads its own; this process submits it from Python with a copy of its
declaration that it does not register (the registry is global, other tests list its types).
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from pydantic import Field
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.contracts import Contract, JobType
from shared.models import Job
from shared.python_api import Jobgate, JobHandle
from shared.settings import Settings
from tests.chaos.conftest import SpawnWorker
from tests.conftest import ADMIN_TOKEN
from tests.factories import auth, make_tenant
from tests.polling import poll_until, reconciler_pass_began

# Worker processes start in turn; a start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(150)

RUN_LOG = {
    "contract_modules": "tests.e2e.run_log_contract",
    "job_modules": "tests.e2e.run_log_job",
}


class RecordRunArgs(Contract):
    log_dir: Annotated[str, Field(description="Directory the run appends its job id to.")]
    sleep_ms: Annotated[int, Field(ge=0, le=1000, description="How long the run takes.")] = 0


class RecordRunResult(Contract):
    pid: Annotated[int, Field(description="Process id of the worker that ran it.")]


RECORD_RUN = JobType(
    name="record_run",
    args=RecordRunArgs,
    result=RecordRunResult,
    description="`tests.e2e.run_log_contract.RECORD_RUN`, as the workers declare it.",
    timeout_seconds=10.0,
    max_tries=1,
)


@pytest.fixture
async def log_dir(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> Path:
    """Where the `record_run` jobs of tenant `acme` (made here) note their runs."""
    await make_tenant(sessionmaker)
    path = tmp_path / "runs"
    path.mkdir()
    return path


def _runs(log_dir: Path) -> list[str]:
    """The ids of the jobs whose code ran, once per run, over every worker's file."""
    return [line for path in log_dir.glob("*.log") for line in path.read_text().split()]


async def _until(handle: JobHandle[Any], status: str, *, timeout: float = 30) -> Job:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (job := await handle.job()).status != status:
        assert loop.time() < deadline, f"job {job.id} is {job.status}, not {status}"
        await asyncio.sleep(0.05)
    return job


async def _past(job: Job) -> None:
    assert job.start_by is not None
    start_by = job.start_by
    await poll_until(lambda: datetime.now(UTC) > start_by, what="the deadline went by")


async def test_a_job_picked_up_after_its_deadline_ends_expired_without_running(
    client: httpx.AsyncClient,
    settings: Settings,
    redis: Redis,
    spawn_runner: SpawnWorker,
    log_dir: Path,
) -> None:
    # One reconciler pass, at start-up: it is the claim that finds the job overdue.
    await spawn_runner(reconcile_interval_seconds=3600, **RUN_LOG).started()
    await reconciler_pass_began(redis)
    paused = await client.post("/admin/queues/default/pause", headers=auth(ADMIN_TOKEN))
    assert paused.status_code == 200, paused.text
    args = {"log_dir": str(log_dir)}
    async with Jobgate(settings, tenant="acme") as jobgate:
        late = await jobgate.submit(RECORD_RUN, args, start_within_seconds=0.5)
        in_time = await jobgate.submit(RECORD_RUN, args)
        await _past(await late.job())
        assert (await late.job()).status == "queued"

        resumed = await client.post("/admin/queues/default/resume", headers=auth(ADMIN_TOKEN))
        assert resumed.status_code == 200, resumed.text
        expired = await _until(late, "expired")
        await _until(in_time, "succeeded")

    assert _runs(log_dir) == [str(in_time.id)]
    assert expired.attempts == 0 and expired.started_at is None
    assert expired.error is not None and expired.error["type"] == "expired"


async def test_a_job_whose_worker_died_is_not_started_again_after_its_deadline(
    settings: Settings, spawn_runner: SpawnWorker, log_dir: Path
) -> None:
    first = await spawn_runner(**RUN_LOG).started()
    async with Jobgate(settings, tenant="acme") as jobgate:
        # Started at once (the worker is idle), well within its deadline; it runs for a second.
        handle = await jobgate.submit(
            RECORD_RUN, {"log_dir": str(log_dir), "sleep_ms": 1000}, start_within_seconds=1
        )
        await poll_until(lambda: _runs(log_dir) == [str(handle.id)], what="the job started")
        first.signal(signal.SIGKILL)  # mid-run: the row stays `running`, its lease lapses
        await first.exit_code(timeout=10)
        await _past(await handle.job())

        await spawn_runner(**RUN_LOG).started()  # takes the job once the lease has lapsed
        expired = await _until(handle, "expired")

    assert _runs(log_dir) == [str(handle.id)]  # the one run the killed worker began
    assert expired.attempts == 1
    assert expired.error is not None and "before it could start again" in expired.error["message"]
