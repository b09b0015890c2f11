"""Putting a taken job back, unclaimed: the admission steps' answer when it may not start yet.

A job an admission step (`worker.admission`) turns away is not claimed: its row stays waiting
with its attempts unchanged, and it goes back to its queue after `delay` at its former place in
line (the score it was taken with), so waiting never uses up a try.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.jobs import store
from shared.jobs.enqueue import Delivery
from shared.jobs.rows import delivery_of
from shared.status import CLAIMABLE, JobStatus
from worker.context import JobRunContext


async def put_back(
    ctx: JobRunContext, tenant_id: uuid.UUID, *, delay: timedelta, score: int | None
) -> Delivery | None:
    """The job again after `delay`, at `score` in line (None: it no longer waits)."""
    # From now, not from after the read: a rate limit's delay ends at the start it booked.
    run_at = datetime.now(UTC) + delay
    async with ctx["sessionmaker"]() as session:
        job = await store.find_job(session, tenant_id=tenant_id, job_id=uuid.UUID(ctx["job_id"]))
    if job is None or JobStatus(job.status) not in CLAIMABLE:
        return None
    return replace(delivery_of(job), run_at=run_at, score_ms=score)
