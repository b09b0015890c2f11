"""The rate-limit admission step: a job of a rate-limited type starts only on a free start of
its limit (`shared.rate_limiter`); otherwise it goes back, unclaimed, until the start it booked.

The last step of `worker.admission.admit`: a start is taken only by a job that then starts
(the tenant quota and concurrency key steps before it may still turn the job away). The wait
is exactly the limiter's, so the job comes back as its start comes round, not by polling; it
keeps its place in line and uses no try meanwhile (`worker.put_back`), and jobs of other types
on the same queue start past it.

A start at most `WAIT_IN_PLACE` away is waited for here, the job's lease held (a shutdown or an
abort ends the wait as it would a run): a put back takes a read, a write to Redis and a
promotion, which on a busy host (a worker taking 50 jobs of the type at once) outlasted so
short a wait, and a job back after its start's grace has lost it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import structlog

from shared.jobs import store
from shared.rate_limiter import RateLimit, schedule_key, take_start
from worker.context import JobRunContext, WorkerContext
from worker.metrics import RATE_LIMITED
from worker.put_back import put_back

log = structlog.get_logger("jobgate.worker")

WAIT_IN_PLACE = timedelta(seconds=0.5)
"""A booked start at most this far away is waited for in place (see the module docstring)."""


def rate_limit_of(ctx: WorkerContext, job_type: str | None) -> RateLimit | None:
    """The rate limit of a job type this worker runs, if it declares one."""
    binding = ctx["bindings"].get(job_type) if job_type is not None else None
    return None if binding is None else binding.job_type.rate_limit


async def admit_by_rate(ctx: JobRunContext, tenant_id: uuid.UUID) -> bool:
    """Take a start of the job type's rate limit; if none is free, wait for the start it booked:
    here if it is near, else put back until then (False)."""
    job_type = ctx["taken"].name
    limit = rate_limit_of(ctx, job_type)
    if job_type is None or limit is None:
        return True
    schedule = await _schedule_of(ctx, job_type, limit, tenant_id)
    if schedule is None:
        return True
    wait = await take_start(ctx["redis"], limit, schedule=schedule, job_id=ctx["job_id"])
    if not wait:
        return True
    RATE_LIMITED.labels(job_type).inc()
    log.info("job.deferred", reason="rate limit", wait_seconds=wait.total_seconds())
    while wait and wait <= WAIT_IN_PLACE:
        with ctx["leases"].hold(ctx["job_id"]):
            await asyncio.sleep(wait.total_seconds())
        # Back at the booked start: the limiter says so (and forgets the booking).
        wait = await take_start(ctx["redis"], limit, schedule=schedule, job_id=ctx["job_id"])
    if not wait:
        return True
    ctx["reschedule"] = await put_back(ctx, tenant_id, delay=wait, score=ctx["score"])
    return False


async def _schedule_of(
    ctx: JobRunContext, job_type: str, limit: RateLimit, tenant_id: uuid.UUID
) -> str | None:
    """The schedule the job follows; a keyed limit reads the job's args (one primary-key read)."""
    if limit.key is None:
        return schedule_key(job_type, limit, tenant_id=tenant_id, args=None)
    async with ctx["sessionmaker"]() as session:
        job = await store.find_job(session, tenant_id=tenant_id, job_id=uuid.UUID(ctx["job_id"]))
    if job is None:
        return None  # gone: the claim finds nothing to run either
    return schedule_key(job_type, limit, tenant_id=tenant_id, args=job.args)
