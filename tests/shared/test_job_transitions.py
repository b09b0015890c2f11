"""The worker's batched status changes on real PostgreSQL: only the given tenant's jobs move,
only from the statuses allowed, and a job owed a webhook gets its delivery row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.contracts import ECHO
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.raw_sql import fetchrow
from shared.jobs.retention import Retention
from shared.jobs.rows import JobKey
from shared.jobs.status_changes import Success, claim_jobs, record_successes
from shared.jobs.status_sql import CLAIM_SQL, SUCCESS_SQL
from shared.jobs.submit import SubmitOptions, job_values
from shared.jobs.submit_sql import store_jobs
from shared.models import Job, JobAttempt, WebhookDelivery
from tests.factories import make_tenant, submit

LATER = datetime.now(UTC) + timedelta(days=1)
WORKER = "test-host:1"
KEEP = Retention(default_seconds=3600, by_type={})


async def _two_jobs_each(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[list[JobKey], list[JobKey]]:
    keys: list[list[JobKey]] = []
    for name in ("acme", "globex"):
        tenant_id, token = await make_tenant(sessionmaker, name)
        jobs = [await submit(client, token, "echo", {"message": f"m{n}"}) for n in range(2)]
        keys.append([JobKey(uuid.UUID(tenant_id), uuid.UUID(job["id"])) for job in jobs])
    return keys[0], keys[1]


async def _statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, str]:
    async with sessionmaker() as session:
        return dict((await session.execute(select(Job.id, Job.status))).all())


async def test_a_claim_moves_only_pairs_of_tenant_and_job_it_was_given(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    engine = sessionmaker.kw["bind"]
    mine, theirs = await _two_jobs_each(client, sessionmaker)
    # Another tenant's job under my tenant id: matches nothing.
    forged = JobKey(mine[0].tenant_id, theirs[0].job_id)
    claimed = await claim_jobs(engine, [*mine, forged], retention=KEEP)

    assert {(job.tenant_id, job.id) for job in claimed} == {
        (key.tenant_id, key.job_id) for key in mine
    }
    assert all(job.status == "running" and job.attempts == 1 for job in claimed)
    assert claimed[0].args in ({"message": "m0", "repeat": 1}, {"message": "m1", "repeat": 1})
    statuses = await _statuses(sessionmaker)
    assert [statuses[key.job_id] for key in theirs] == ["queued", "queued"]


async def test_a_claims_asynchronous_commit_stays_within_the_claim(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The next statement on the same pooled connection (the pool is LIFO) commits
    synchronously again: a submit or an outcome must never inherit the claim's setting."""
    engine = sessionmaker.kw["bind"]
    mine, _ = await _two_jobs_each(client, sessionmaker)
    assert len(await claim_jobs(engine, mine, retention=KEEP)) == 2
    setting = await fetchrow(engine, "SELECT current_setting('synchronous_commit') AS value")

    assert setting is not None
    assert setting["value"] == "on"


async def test_a_claim_skips_finished_jobs_and_bounds_redeliveries(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    engine = sessionmaker.kw["bind"]
    keys, _ = await _two_jobs_each(client, sessionmaker)
    cancelled, lost = keys
    async with sessionmaker() as session:
        await session.execute(
            update(Job).where(Job.id == cancelled.job_id).values(status="cancelled")
        )
        # Running with its tries used up: its workers keep dying.
        await session.execute(
            update(Job)
            .where(Job.id == lost.job_id)
            .values(status="running", attempts=Job.max_tries)
        )
        await session.commit()

    assert await claim_jobs(engine, keys, retention=KEEP, lost_attempts_allowed=0) == []
    again = await claim_jobs(engine, keys, retention=KEEP, lost_attempts_allowed=1)
    assert [job.id for job in again] == [lost.job_id]


async def test_successes_record_running_jobs_their_attempts_and_owe_their_webhooks(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    engine = sessionmaker.kw["bind"]
    tenant_id, token = await make_tenant(sessionmaker)
    hooked = await submit(
        client, token, "echo", {"message": "a"}, {"webhook_url": "https://hooks.example.com/in"}
    )
    plain = await submit(client, token, "echo", {"message": "b"})
    never_claimed = await submit(client, token, "echo", {"message": "c"})
    keys = [JobKey(uuid.UUID(tenant_id), uuid.UUID(job["id"])) for job in (hooked, plain)]
    idle = JobKey(uuid.UUID(tenant_id), uuid.UUID(never_claimed["id"]))
    claimed = {
        JobKey(job.tenant_id, job.id): job for job in await claim_jobs(engine, keys, retention=KEEP)
    }
    ran = {key: RanAttempt.of(job, WORKER) for key, job in claimed.items()}
    ran[idle] = RanAttempt(1, datetime.now(UTC), WORKER)  # as a worker that lost its claim

    moved = await record_successes(
        engine, [Success(key, {"echo": "x"}, LATER, ran[key]) for key in [*keys, idle]]
    )

    assert moved == set(keys)  # the queued one is not "succeeded" without running
    async with sessionmaker() as session:
        rows = {job.id: job for job in (await session.scalars(select(Job))).all()}
        deliveries = (await session.scalars(select(WebhookDelivery))).all()
        attempts = {row.job_id: row for row in await session.scalars(select(JobAttempt))}
    assert [rows[key.job_id].status for key in keys] == ["succeeded", "succeeded"]
    assert attempts.keys() == {key.job_id for key in keys}  # none for the job not running
    for key in keys:
        attempt, job = attempts[key.job_id], rows[key.job_id]
        assert (attempt.number, attempt.worker, attempt.outcome) == (1, WORKER, "succeeded")
        assert attempt.started_at == claimed[key].started_at == job.started_at
        assert attempt.finished_at == job.finished_at
        assert attempt.error_type is None
    assert rows[keys[0].job_id].result == {"echo": "x"}
    assert rows[idle.job_id].status == "queued"
    assert [(d.job_id, d.url) for d in deliveries] == [
        (keys[0].job_id, "https://hooks.example.com/in")
    ]


async def test_one_jobs_claim_and_success_find_its_row_by_its_key_in_a_small_table(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A new deployment's job table: a few hundred rows, never analysed. Planned for unnest's
    guess of ten rows of unknown values, one job's claim scanned the whole table, a cost that
    grows with the table; a plan for one row looks it up by its key."""
    engine = sessionmaker.kw["bind"]
    tenant_id, _ = await make_tenant(sessionmaker)
    tenant = uuid.UUID(tenant_id)
    now = datetime.now(UTC)
    rows = [
        job_values(ECHO, args=ECHO.args(message="m"), options=SubmitOptions(), now=now)
        for _ in range(300)
    ]
    await store_jobs(engine, tenant_id=tenant, jobs=rows)
    job = f"'{tenant}', '{rows[0]['id']}'"  # our own UUIDs: safe to write into the text
    statements = {
        "claim": (CLAIM_SQL[True], f"{job}, NULL, '{{}}', 3600"),
        "success": (
            SUCCESS_SQL[True],
            f"{job}, '{{}}', now(), '{uuid.uuid4()}', 1, now(), '{WORKER}'",
        ),
    }
    for name, (sql, values) in statements.items():
        plan = await _generic_plan(engine, sql, values)
        assert "Seq Scan on job" not in plan, f"{name}:\n{plan}"
        assert "Index Scan" in plan, f"{name}:\n{plan}"


async def _generic_plan(engine: AsyncEngine, sql: str, values: str) -> str:
    """The plan PostgreSQL settles on for a statement prepared once and run many times (as
    asyncpg runs them): the generic one, made without the parameters' values."""
    async with engine.connect() as connection:
        driver: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        await driver.execute(f"PREPARE probe AS {sql}")
        try:
            rows = await driver.fetch(f"EXPLAIN EXECUTE probe({values})")
        finally:
            await driver.execute("DEALLOCATE probe; RESET plan_cache_mode")
    return "\n".join(row[0] for row in rows)
