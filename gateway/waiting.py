"""Long-poll: hold a read until the job is terminal or the wait runs out."""

from __future__ import annotations

import asyncio
import contextlib
import time

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.job_events import JobEvents
from shared.jobs import store
from shared.models import Job
from shared.status import TERMINAL, JobStatus


async def wait_until_terminal(
    session: AsyncSession,
    events: JobEvents,
    job: Job,
    *,
    wait_seconds: float,
    recheck_seconds: float,
) -> Job:
    """The job once terminal, or as it is when `wait_seconds` have passed."""
    deadline = time.monotonic() + wait_seconds
    while not JobStatus(job.status).is_terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Woken only by a change to a terminal status: news of `running` or of progress (a
        # long job may report it often) would each cost a re-read for nothing.
        async with events.watch(job.id, statuses=TERMINAL) as changed:
            # Re-read after subscribing: a change between the last read and now is not missed.
            job = await store.get_job(session, tenant_id=job.tenant_id, job_id=job.id)
            # End the read transaction: a waiting request must not hold a pooled connection.
            # (Commit, not rollback: rollback would expire the loaded job.)
            await session.commit()
            if JobStatus(job.status).is_terminal:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, recheck_seconds))
    return job
