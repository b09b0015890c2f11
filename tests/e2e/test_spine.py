"""Submit → run on a real ARQ worker → read the result, for every built-in job type."""

from __future__ import annotations

import httpx
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_tenant, submit, wait_for_status


async def test_echo_runs_and_returns_its_result(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], worker: Worker
) -> None:
    _, token = await make_tenant(sessionmaker)
    job = await submit(client, token, "echo", {"message": "ab", "repeat": 3})
    assert job["status"] == "queued"
    done = await wait_for_status(client, token, job["id"], "succeeded", "failed")
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "ababab"}
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"] and done["expires_at"]
