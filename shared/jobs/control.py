"""Changing a job's course after submit: cancel, re-run, bulk purge.

Each function commits its PostgreSQL change (`status_changes`) first and touches Redis after,
like a submit; a Redis hiccup after the commit leaves a stale queue entry that the worker skips
(the row says the job is not waiting), never a job in the wrong state (`shared.jobs.cancel`).
A re-run is a new job: it is created by `submit.create_jobs`, as every job is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from arq.connections import ArqRedis
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import Registry
from shared.errors import JobStateConflict, QueueNotAllowed
from shared.jobs import status_changes, store
from shared.jobs.cancel import Cancelled, stop_job, tell_workers
from shared.jobs.retention import expires_at
from shared.jobs.submit import InSession, SubmitOptions, create_jobs, job_values
from shared.models import Job
from shared.settings import Settings
from shared.status import UNSUCCESSFUL
from shared.tenants.ratelimit import RateLimit, charge


async def cancel_job(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    registry: Registry,
    settings: Settings,
) -> Cancelled:
    """Cancel a waiting job at once, or ask a running one to stop; terminal jobs conflict."""
    current = await store.get_job(session, tenant_id=tenant_id, job_id=job_id)
    until = expires_at(registry.get(current.name), settings)
    outcome = await stop_job(session, tenant_id=tenant_id, job_id=job_id, expires_at=until)
    if outcome is None:
        status = current.status  # read before rollback expires it
        await session.rollback()
        raise JobStateConflict(
            f"The job is already {status}; only unfinished jobs can be cancelled."
        )
    await session.commit()
    await tell_workers(redis, [outcome])
    return outcome


async def retry_job(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    registry: Registry,
    rate: RateLimit | None,
    settings: Settings,
) -> Job:
    """Re-run a failed, cancelled or expired job as a new job with the same args, linked both
    ways.

    A re-run creates a job for the tenant: it takes a token of `rate` (the tenant's limit; None
    for callers not charged), once the job is known to be re-runnable, before anything is
    stored (`RateLimited` stores nothing). Its start deadline is the one a submit without
    options gets (the job type's `start_within_seconds` from now, or none), never the old
    job's: someone asked for it to run now.
    """
    old = await store.get_job(session, tenant_id=tenant_id, job_id=job_id)
    if old.status not in UNSUCCESSFUL or old.retried_by is not None:
        reason = "was already re-run" if old.retried_by else f"is {old.status}"
        raise JobStateConflict(
            f"Only failed, cancelled or expired jobs can be re-run; this one {reason}."
        )
    if old.workflow_id is not None:
        # Re-run alone, its workflow (already failed) would never hear of the new job.
        raise JobStateConflict(
            f"This job is step {old.workflow_step!r} of workflow {old.workflow_id}: retry the"
            f" workflow (POST /workflows/{old.workflow_id}/retry), which re-runs its failed"
            " steps and carries on from them."
        )
    job_type = registry.get(old.name)
    try:
        args = job_type.args.model_validate(old.args)
    except ValidationError:
        raise JobStateConflict("The job's args no longer match its type's contract.") from None
    options = SubmitOptions(
        priority=old.priority,
        max_tries=old.max_tries,
        timeout_seconds=old.timeout_seconds,
        queue=old.queue,
        labels=old.labels,
        webhook_url=old.webhook_url,
        # The key it counted under, whether its args or its submit gave it.
        concurrency_key=old.concurrency_key if job_type.concurrency is not None else None,
    )
    try:
        new = job_values(job_type, args=args, options=options, now=datetime.now(UTC))
    except QueueNotAllowed:
        raise JobStateConflict(
            f"The job ran on queue {old.queue!r}, which its type no longer runs on."
        ) from None
    new |= {"tenant_id": tenant_id, "retry_of": old.id}
    await charge(redis, tenant_id=tenant_id, rate=rate, cost=1)
    linked = await status_changes.link_retry(
        session, tenant_id=tenant_id, job_id=old.id, retried_by=new["id"]
    )
    if not linked:
        await session.rollback()
        raise JobStateConflict("The job was re-run or changed meanwhile.")
    await create_jobs(redis, InSession(session, tenant_id, settings=settings), [new])
    return Job(**new)


async def purge_waiting(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    tenant_id: uuid.UUID,
    queue: str | None = None,
    name: str | None = None,
) -> int:
    """Cancel every job of a tenant that has not started (optionally one queue or type)."""
    jobs = await status_changes.purge_waiting(session, tenant_id=tenant_id, queue=queue, name=name)
    await session.commit()
    await tell_workers(redis, [Cancelled(job=job, is_done=True) for job in jobs])
    return len(jobs)
