"""Cancelling jobs: the status change in the caller's transaction, then Redis told after the commit.

A waiting job is cancelled at once (`cancel_waiting`); a running one is asked to stop
(`request_cancel`) and its worker, told through ARQ's abort set, records `cancelled` once its
task has stopped (`worker.outcomes.record_if_aborted`). `POST /jobs/{id}/cancel`
(`shared.jobs.control.cancel_job`) and a concurrency strategy superseding older jobs
(`shared.jobs.concurrency_keys`) both go this way. PostgreSQL is committed first: a Redis
hiccup after it leaves a stale queue entry that workers skip (the row says the job is not
waiting), never a job in the wrong state.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import QueueUnavailable
from shared.jobs import status_changes
from shared.jobs.enqueue import request_abort, withdraw
from shared.jobs.key_waits import forget_waiting
from shared.jobs.rows import delivery_of
from shared.models import Job


@dataclass(frozen=True)
class Cancelled:
    """Outcome of a cancel: the job, and whether it is already `cancelled` (else aborting)."""

    job: Job
    is_done: bool


async def stop_job(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    expires_at: datetime,
    reason: str | None = None,
) -> Cancelled | None:
    """Cancel a waiting job, or ask a running one to stop; None if it has finished.

    Not committed: the caller commits, then calls `tell_workers`. `reason`: why jobgate
    cancels it, shown as its `cancelled` error (None: the caller asked).
    """
    job = await status_changes.cancel_waiting(
        session, tenant_id=tenant_id, job_id=job_id, expires_at=expires_at, reason=reason
    )
    if job is not None:
        return Cancelled(job=job, is_done=True)
    job = await status_changes.request_cancel(
        session, tenant_id=tenant_id, job_id=job_id, reason=reason
    )
    if job is not None:
        return Cancelled(job=job, is_done=False)
    return None


async def tell_workers(redis: ArqRedis, cancelled: Sequence[Cancelled]) -> None:
    """Once committed: take the cancelled jobs off Redis, ask the workers to abort the others.

    `QueueUnavailable` if an abort could not be asked for (the job's row says it was asked to
    stop; cancelling it again asks again).
    """
    done = [delivery_of(outcome.job) for outcome in cancelled if outcome.is_done]
    if done:
        with contextlib.suppress(RedisError, OSError):  # a stale entry is skipped by workers
            await withdraw(redis, done)
            await forget_waiting(redis, done)
    for outcome in cancelled:
        if not outcome.is_done:
            try:
                await request_abort(redis, outcome.job.id)
            except (RedisError, OSError) as exc:
                raise QueueUnavailable() from exc
