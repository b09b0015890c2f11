"""The shapes a job row takes in code, and the one conversion each needs.

- `Job` (`shared.models`): a row loaded through a session; what reads, views and the
  dashboard use.
- A new job's column values (`dict[str, Any]`, built by `shared.jobs.submit.job_values`):
  what `create_jobs` stores and what a just-submitted job's view is made from
  (`JobOut.of_new`), so the submit path never builds ORM objects.
- `ClaimedJob`: a job as the worker runs it, the columns a run needs as returned by the claim
  (`status_changes.claim_jobs`), so a busy worker never builds ORM objects either.
- `Delivery` (`shared.jobs.enqueue`): what ARQ is told; `delivery_of` makes it from any of the
  three above.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from shared.contracts import Priority
from shared.jobs.enqueue import Delivery
from shared.models import Job


@dataclass(frozen=True)
class JobKey:
    """Which job: its tenant and its id, always together."""

    tenant_id: uuid.UUID
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as a worker runs it: the columns the run needs, without an ORM object's upkeep."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    queue: str
    priority: str
    status: str
    args: dict[str, Any]
    error: dict[str, Any] | None
    attempts: int
    max_tries: int
    timeout_seconds: float
    created_at: datetime
    scheduled_at: datetime | None
    start_by: datetime | None
    started_at: datetime | None
    traceparent: str | None
    workflow_id: uuid.UUID | None
    concurrency_key: str | None

    @classmethod
    def of(cls, job: Job) -> ClaimedJob:
        """The same facts, from a job loaded through the ORM."""
        return cls(*(getattr(job, name) for name in CLAIMED_COLUMNS))


CLAIMED_COLUMNS = tuple(field.name for field in fields(ClaimedJob))


def delivery_of(job: Job | ClaimedJob | Mapping[str, Any]) -> Delivery:
    """What ARQ must be told about a stored job (an ORM row, a claimed one, or column values)."""
    if isinstance(job, Mapping):
        return Delivery(
            job_id=job["id"],
            tenant_id=job["tenant_id"],
            name=job["name"],
            queue=job["queue"],
            priority=cast(Priority, job["priority"]),
            run_at=job["scheduled_at"],
            concurrency_key=job["concurrency_key"],
        )
    return Delivery(
        job_id=job.id,
        tenant_id=job.tenant_id,
        name=job.name,
        queue=job.queue,
        priority=cast(Priority, job.priority),
        run_at=job.scheduled_at,
        concurrency_key=job.concurrency_key,
    )
