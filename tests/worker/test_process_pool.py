"""One worker process, one pool: every queue it serves shares the process's engine."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy import text

from shared.contracts import load_contracts
from shared.db import create_engine, libpq_url
from shared.settings import Settings
from tests.polling import poll_until
from worker.loop import stop_worker
from worker.process import build_workers


async def test_the_queues_of_a_process_share_one_pool(settings: Settings) -> None:
    queues = load_contracts(settings.contract_modules).queues()
    assert len(queues) > 1
    application_name = f"jobgate-test-{uuid.uuid4().hex[:8]}"
    # One connection at most: one pool per queue would have opened one each at start-up.
    sized = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    engine = create_engine(sized, application_name=application_name)
    admin = await asyncpg.connect(libpq_url(settings.require_database_url()))
    workers = build_workers(sized, queues, engine=engine)
    mains = [asyncio.create_task(worker.main()) for worker in workers]
    try:
        await poll_until(
            lambda: all("engine" in worker.ctx for worker in workers),
            timeout=10,
            what="every worker started",
        )
        assert all(worker.ctx["engine"] is engine for worker in workers)
        sessions = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        assert sessions == 1
    finally:
        await asyncio.gather(
            *(stop_worker(worker, main, 5) for worker, main in zip(workers, mains, strict=True))
        )
        await admin.close()
    # The workers left the engine to its owner: it still works until that disposes of it.
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT 1")) == 1
    await engine.dispose()
