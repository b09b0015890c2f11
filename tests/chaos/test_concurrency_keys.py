"""Concurrency keys across worker processes, under both runners: one key's jobs never overlap
while another key's start at once, and the cancelling strategies end jobs as documented."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.chaos.conftest import GatewayFactory, SpawnWorker
from tests.factories import make_tenant, submit, wait_for_status
from tests.keyed_jobs import KEYED_TYPES
from tests.polling import poll_job
from worker.testing import declared

# Worker processes start in turn; a start-up alone may take many seconds on a busy host.
pytestmark = pytest.mark.timeout(150)

KEYED_MODULES = {"contract_modules": "tests.keyed_contract", "job_modules": "tests.keyed_jobs"}


@pytest.fixture
async def keyed(make_gateway: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that knows the keyed test types, as the worker processes do."""
    with declared(*KEYED_TYPES):
        yield await make_gateway()


@pytest.fixture
async def token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    _, first_key = await make_tenant(sessionmaker)
    return first_key


def _args(customer: str, seconds: float) -> dict[str, Any]:
    return {"customer": {"id": customer}, "seconds": seconds}


async def test_one_keys_jobs_never_overlap_across_processes_and_another_key_starts_at_once(
    keyed: httpx.AsyncClient, token: str, spawn_runner: SpawnWorker
) -> None:
    workers = [spawn_runner(**KEYED_MODULES) for _ in range(2)]
    for worker in workers:
        await worker.started()
    same = [await submit(keyed, token, "keyed_queue", _args("42", 0.5)) for _ in range(3)]
    other = await submit(keyed, token, "keyed_queue", _args("7", 0.5))

    runs = [
        (await wait_for_status(keyed, token, job["id"], "succeeded", timeout=30))["result"]
        for job in same
    ]
    spans = sorted((run["started"], run["ended"]) for run in runs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, spans  # one at a time, whichever process ran them
    apart = (await wait_for_status(keyed, token, other["id"], "succeeded"))["result"]
    assert apart["started"] < spans[0][1]  # not held up behind key 42's line


async def test_cancel_in_progress_aborts_the_running_job_for_the_newer_one(
    keyed: httpx.AsyncClient, token: str, spawn_runner: SpawnWorker
) -> None:
    await spawn_runner(**KEYED_MODULES).started()
    older = await submit(keyed, token, "keyed_latest", _args("42", 30.0))
    await poll_job(keyed, token, older["id"], lambda job: job["status"] == "running", timeout=15)
    newer = await submit(keyed, token, "keyed_latest", _args("42", 0.0))

    stopped = await wait_for_status(keyed, token, older["id"], "cancelled", timeout=15)
    assert stopped["error"]["message"].startswith(f"superseded by job {newer['id']}")
    done = await wait_for_status(keyed, token, newer["id"], "succeeded", timeout=15)
    assert done["started_at"] >= stopped["finished_at"]


async def test_cancel_newest_cancels_the_newcomer_and_the_running_job_finishes(
    keyed: httpx.AsyncClient, token: str, spawn_runner: SpawnWorker
) -> None:
    await spawn_runner(**KEYED_MODULES).started()
    running = await submit(keyed, token, "keyed_once", _args("42", 1.0))
    await poll_job(keyed, token, running["id"], lambda job: job["status"] == "running", timeout=15)
    newcomer = await submit(keyed, token, "keyed_once", _args("42", 0.0))
    other_key = await submit(keyed, token, "keyed_once", _args("7", 0.0))

    assert newcomer["status"] == "cancelled"
    assert "cancel_newest" in newcomer["error"]["message"]
    await wait_for_status(keyed, token, other_key["id"], "succeeded", timeout=15)
    await wait_for_status(keyed, token, running["id"], "succeeded", timeout=15)
    assert (await wait_for_status(keyed, token, newcomer["id"], "cancelled"))["attempts"] == 0
