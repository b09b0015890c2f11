"""Start deadlines in the statements themselves, on real PostgreSQL: the claim expires an overdue
job instead of starting it, the sweep expires waiting ones (and skips rows a claim holds), a
retry past the deadline expires its job; each owes the job's webhook in the same statement."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.contracts import ECHO
from shared.jobs import deadlines, status_changes
from shared.jobs.attempt_sql import RanAttempt
from shared.jobs.deadline_sql import LOST_PAST_DEADLINE, NEXT_TRY_NOT_STARTED, NOT_STARTED
from shared.jobs.retention import Retention
from shared.jobs.rows import JobKey
from shared.jobs.status_changes import claim_jobs
from shared.jobs.submit import SubmitOptions, job_values
from shared.jobs.submit_sql import store_jobs
from shared.models import Job, JobAttempt, WebhookDelivery
from tests.factories import make_tenant

KEEP = Retention(default_seconds=3600, by_type={"echo": 120})
HOOK = "https://hooks.example.com/in"
CLOSE = timedelta(seconds=2)


async def _jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    tenant_id: uuid.UUID,
    *starts_by: timedelta | None,
    **values: Any,
) -> list[JobKey]:
    """Queued echo jobs, each with a deadline this far from now (None: no deadline); `values`
    set other columns of all of them."""
    now = datetime.now(UTC)
    rows = [
        job_values(ECHO, args=ECHO.args(message="m"), options=SubmitOptions(), now=now)
        | {"start_by": None if offset is None else now + offset, "webhook_url": HOOK}
        for offset in starts_by
    ]
    await store_jobs(sessionmaker.kw["bind"], tenant_id=tenant_id, jobs=rows)
    keys = [JobKey(tenant_id, row["id"]) for row in rows]
    if values:
        await _set(sessionmaker, keys, **values)
    return keys


async def _set(
    sessionmaker: async_sessionmaker[AsyncSession], keys: list[JobKey], **values: Any
) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Job).where(Job.id.in_([key.job_id for key in keys])).values(**values)
        )
        await session.commit()


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, Job]:
    async with sessionmaker() as session:
        return {job.id: job for job in (await session.scalars(select(Job))).all()}


async def _deliveries(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[uuid.UUID, uuid.UUID]:
    """Each webhook delivery's id, by its job."""
    async with sessionmaker() as session:
        rows = await session.execute(select(WebhookDelivery.job_id, WebhookDelivery.id))
        return dict(rows.all())


async def _tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    return uuid.UUID((await make_tenant(sessionmaker))[0])


def _engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    engine: AsyncEngine = sessionmaker.kw["bind"]
    return engine


class TestClaim:
    async def test_an_overdue_job_is_expired_not_started(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        overdue, due, unbounded = await _jobs(
            sessionmaker, tenant, timedelta(seconds=-1), timedelta(hours=1), None
        )

        claimed = await claim_jobs(_engine(sessionmaker), [overdue, due, unbounded], retention=KEEP)

        statuses = {job.id: (job.status, job.attempts) for job in claimed}
        assert statuses == {
            overdue.job_id: ("expired", 0),
            due.job_id: ("running", 1),
            unbounded.job_id: ("running", 1),
        }
        rows = await _rows(sessionmaker)
        expired = rows[overdue.job_id]
        assert expired.status == "expired" and expired.error == NOT_STARTED
        assert expired.started_at is None and expired.attempts == 0
        assert expired.finished_at is not None and expired.expires_at is not None
        # The job type's own retention (`by_type`), counted from the expiry.
        assert abs(expired.expires_at - expired.finished_at - timedelta(seconds=120)) < CLOSE
        deliveries = await _deliveries(sessionmaker)
        assert set(deliveries) == {overdue.job_id}  # the others are running: nothing owed yet
        assert deliveries[overdue.job_id].version == 7  # made in SQL, time-ordered as ours

    async def test_a_re_delivery_after_the_deadline_is_expired(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A worker died mid-attempt and the deadline passed before another took the job:
        starting it again now would start it late. Even with the re-delivery allowance used
        up, it ends `expired` (not `worker_lost`): the deadline is the reason it stops."""
        tenant = await _tenant(sessionmaker)
        (lost,) = await _jobs(
            sessionmaker, tenant, timedelta(seconds=-1), status="running", attempts=3
        )

        (claimed,) = await claim_jobs(
            _engine(sessionmaker), [lost], retention=KEEP, lost_attempts_allowed=0
        )

        assert (claimed.status, claimed.attempts) == ("expired", 3)
        assert claimed.error == LOST_PAST_DEADLINE

    async def test_a_finished_job_stays_as_it_is(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        (done,) = await _jobs(sessionmaker, tenant, timedelta(seconds=-1), status="cancelled")
        assert await claim_jobs(_engine(sessionmaker), [done], retention=KEEP) == []
        assert (await _rows(sessionmaker))[done.job_id].status == "cancelled"
        assert await _deliveries(sessionmaker) == {}


class TestSweep:
    async def test_expires_waiting_jobs_past_their_deadline_and_nothing_else(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        late = timedelta(seconds=-1)
        queued, scheduled, retrying = await _jobs(sessionmaker, tenant, late, late, late)
        await _set(sessionmaker, [scheduled], status="scheduled")
        await _set(sessionmaker, [retrying], status="retrying", attempts=1)
        (running,) = await _jobs(sessionmaker, tenant, late, status="running", attempts=1)
        future, unbounded = await _jobs(sessionmaker, tenant, timedelta(hours=1), None)

        expired = await deadlines.expire_overdue(
            _engine(sessionmaker), retention=KEEP, batch_size=100
        )

        assert {job.id for job in expired} == {key.job_id for key in (queued, scheduled, retrying)}
        assert {job.id: (job.status, job.error) for job in expired} == {
            queued.job_id: ("expired", NOT_STARTED),
            scheduled.job_id: ("expired", NOT_STARTED),
            retrying.job_id: ("expired", NEXT_TRY_NOT_STARTED),  # it ran once already
        }
        rows = await _rows(sessionmaker)
        assert rows[running.job_id].status == "running"  # it started in time; its worker ends it
        assert rows[future.job_id].status == rows[unbounded.job_id].status == "queued"
        assert set(await _deliveries(sessionmaker)) == {job.id for job in expired}

    async def test_takes_a_bounded_batch_soonest_deadline_first(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        keys = await _jobs(
            sessionmaker,
            tenant,
            timedelta(seconds=-1),
            timedelta(seconds=-3),
            timedelta(seconds=-2),
        )
        engine = _engine(sessionmaker)

        first = await deadlines.expire_overdue(engine, retention=KEEP, batch_size=2)
        second = await deadlines.expire_overdue(engine, retention=KEEP, batch_size=2)

        assert [job.id for job in first] == [keys[1].job_id, keys[2].job_id]
        assert [job.id for job in second] == [keys[0].job_id]
        assert await deadlines.expire_overdue(engine, retention=KEEP, batch_size=2) == []

    async def test_skips_a_row_a_claim_holds_and_the_claim_then_expires_it_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        (key,) = await _jobs(sessionmaker, tenant, timedelta(seconds=-1))
        engine = _engine(sessionmaker)
        async with engine.connect() as holder:  # a claim in flight holds the row's lock
            await holder.execute(
                text("SELECT 1 FROM job WHERE id = :id FOR UPDATE"), {"id": key.job_id}
            )
            assert await deadlines.expire_overdue(engine, retention=KEEP, batch_size=10) == []
            await holder.rollback()

        (claimed,) = await claim_jobs(engine, [key], retention=KEEP)
        assert claimed.status == "expired"
        assert await deadlines.expire_overdue(engine, retention=KEEP, batch_size=10) == []
        assert await claim_jobs(engine, [key], retention=KEEP) == []
        async with sessionmaker() as session:
            owed = await session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert owed == 1  # one expiry, one webhook


class TestRetryPastTheDeadline:
    async def test_a_running_job_is_expired_with_its_last_error_kept(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        tenant = await _tenant(sessionmaker)
        (key,) = await _jobs(sessionmaker, tenant, timedelta(seconds=1))
        (claimed,) = await claim_jobs(_engine(sessionmaker), [key], retention=KEEP)
        retry_at = datetime.now(UTC) + timedelta(seconds=30)
        assert deadlines.is_too_late((await _rows(sessionmaker))[key.job_id].start_by, retry_at)
        failure = {"type": "OSError", "message": "down"}
        error = deadlines.retry_too_late_error(retry_at, failure)
        until = datetime.now(UTC) + timedelta(hours=1)
        expire = functools.partial(
            status_changes.expire_instead_of_retry,
            tenant_id=tenant,
            job_id=key.job_id,
            error=error,
            expires_at=until,
            attempt=RanAttempt.of(claimed, "test-host:1"),
            attempt_error=failure,
        )

        async with sessionmaker() as session:
            moved = await expire(session)
            await session.commit()
            again = await expire(session)
            attempts = (await session.scalars(select(JobAttempt))).all()

        assert moved is not None and moved.status == "expired"
        assert again is None  # no longer running
        assert moved.error is not None and moved.error["type"] == "expired"
        assert "OSError: down" in moved.error["message"]
        assert set(await _deliveries(sessionmaker)) == {key.job_id}
        # The attempt itself failed, with its own error; the job expired after it.
        (attempt,) = attempts
        assert (attempt.number, attempt.outcome, attempt.worker) == (1, "failed", "test-host:1")
        assert (attempt.error_type, attempt.error_message) == ("OSError", "down")

    def test_a_retry_at_the_deadline_itself_is_still_in_time(self) -> None:
        deadline = datetime.now(UTC)
        assert not deadlines.is_too_late(deadline, deadline)
        assert deadlines.is_too_late(deadline, deadline + timedelta(milliseconds=1))
        assert not deadlines.is_too_late(None, deadline + timedelta(days=365))
