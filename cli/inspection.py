"""What `jobgate inspect` shows: the operator's view of the whole system, every tenant at once,
or with a job's id, that one job and its attempts.

Workers, queues and rate limits' schedules come from Redis (`shared.presence`,
`shared.jobs.queue_stats`, `shared.rate_limiter`); running jobs, recent failures and
expirations, and paused queues from PostgreSQL, where every job's truth is; job types and the
queues they may run on from the registry. A running job names its worker when a live worker's
announcement lists it (a job whose worker died shows none until its lease lapses and another
worker takes it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contracts import JobType
from shared.errors import JobNotFound
from shared.jobs import operator_queries, store
from shared.jobs.attempts import AttemptOut, read_attempts
from shared.jobs.key_waits import waiting_counts
from shared.jobs.queue_pauses import paused_queues
from shared.jobs.queue_stats import read_queue_stats
from shared.jobs.view import JobOut, job_view
from shared.models import Job
from shared.presence import WorkerPresence, alive_workers
from shared.rate_limiter import next_free_start


class WorkerView(BaseModel):
    """A live worker process, as it last announced itself."""

    name: str = Field(description="`host:pid`.")
    queues: list[str]
    in_flight: dict[str, int] = Field(description="Jobs it runs now, per queue.")
    started: int = Field(description="Jobs it started since it began.")
    finished: int = Field(description="Attempts it finished since it began.")
    since: datetime
    announced_at: datetime


class RunningJob(BaseModel):
    """A job whose row says `running`."""

    id: uuid.UUID
    name: str
    queue: str
    tenant: str
    attempt: int
    max_tries: int
    started_at: datetime | None
    worker: str | None = Field(description="The live worker that announced it runs the job.")
    concurrency_key: str | None = Field(description="The key its concurrency limit counts.")


class QueueLine(BaseModel):
    """Jobs due on one queue at one priority."""

    queue: str
    priority: str
    depth: int
    oldest_age_seconds: float | None


class JobTypeLine(BaseModel):
    """A registered job type and the queues its jobs may run on."""

    name: str
    queues: list[str] = Field(
        description="Its queue first (where jobs run unless a submit picks another), then the"
        " others a submit's `options.queue` may pick."
    )


class FailedJob(BaseModel):
    """A job in the dead-letter view."""

    id: uuid.UUID
    name: str
    queue: str
    tenant: str
    attempts: int
    finished_at: datetime | None
    error_type: str | None
    error_message: str | None


class ExpiredJob(BaseModel):
    """A job that was not started by its start deadline."""

    id: uuid.UUID
    name: str
    queue: str
    tenant: str
    start_by: datetime | None
    finished_at: datetime | None


class RateLimitedType(BaseModel):
    """A job type with a rate limit, and how far ahead its starts are booked."""

    name: str
    queue: str
    limit: str = Field(description="The limit in words (`10 per 1 s, burst 2`).")
    next_free_start_seconds: float | None = Field(
        description="How long until a new job of the type could start: it grows with the jobs "
        "waiting their turn (null: a keyed limit, one schedule per tenant and key)."
    )


class Inspection(BaseModel):
    """Everything `jobgate inspect` prints (and `--json` renders as is)."""

    at: datetime
    workers: list[WorkerView]
    running: list[RunningJob]
    queues: list[QueueLine]
    paused_queues: list[str] = Field(description="Queues whose jobs workers do not start.")
    scheduled_waiting: int
    scheduled_overdue: int
    concurrency_waiting: dict[str, int] = Field(
        description="Jobs waiting for a slot of their concurrency key, by job type."
    )
    recent_failures: list[FailedJob]
    recent_expirations: list[ExpiredJob]
    job_types: list[JobTypeLine]
    rate_limited_types: list[RateLimitedType] = Field(default_factory=list)


def _time(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)


def _worker_view(worker: WorkerPresence) -> WorkerView:
    return WorkerView(
        name=worker.name,
        queues=worker.queues,
        in_flight=worker.in_flight,
        started=worker.started,
        finished=worker.finished,
        since=_time(worker.since),
        announced_at=_time(worker.announced_at),
    )


def _running(job: Job, tenants: dict[uuid.UUID, str], owners: dict[str, str]) -> RunningJob:
    return RunningJob(
        id=job.id,
        name=job.name,
        queue=job.queue,
        tenant=tenants.get(job.tenant_id, str(job.tenant_id)),
        attempt=job.attempts,
        max_tries=job.max_tries,
        started_at=job.started_at,
        worker=owners.get(str(job.id)),
        concurrency_key=job.concurrency_key,
    )


def _failed(job: Job, tenants: dict[uuid.UUID, str]) -> FailedJob:
    error = job.error or {}
    return FailedJob(
        id=job.id,
        name=job.name,
        queue=job.queue,
        tenant=tenants.get(job.tenant_id, str(job.tenant_id)),
        attempts=job.attempts,
        finished_at=job.finished_at,
        error_type=error.get("type"),
        error_message=error.get("message"),
    )


def _expired(job: Job, tenants: dict[uuid.UUID, str]) -> ExpiredJob:
    return ExpiredJob(
        id=job.id,
        name=job.name,
        queue=job.queue,
        tenant=tenants.get(job.tenant_id, str(job.tenant_id)),
        start_by=job.start_by,
        finished_at=job.finished_at,
    )


async def _rate_limited(
    redis: ArqRedis, job_types: Sequence[JobType[Any, Any]]
) -> list[RateLimitedType]:
    found = []
    for job_type in job_types:
        limit = job_type.rate_limit
        if limit is None:
            continue
        waiting = None if limit.key else await next_free_start(redis, job_type.name, limit)
        found.append(
            RateLimitedType(
                name=job_type.name,
                queue=job_type.queue,
                limit=limit.describe(),
                next_free_start_seconds=None if waiting is None else waiting.total_seconds(),
            )
        )
    return found


async def inspect_system(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    job_types: Sequence[JobType[Any, Any]],
    running_limit: int = 50,
    failures_limit: int = 10,
) -> Inspection:
    """Read workers, queues (at least those `job_types` may run on), running jobs, recent
    failures and expirations (`failures_limit` bounds each of the last two), and the rate
    limits of `job_types`."""
    workers = await alive_workers(redis)
    served = {queue for worker in workers for queue in worker.queues}
    declared = {queue for job_type in job_types for queue in job_type.queues}
    stats = await read_queue_stats(redis, sorted(declared | served))
    running = await operator_queries.running_jobs(session, limit=running_limit)
    failed = await operator_queries.failed_jobs(session, limit=failures_limit)
    expired = await operator_queries.expired_jobs(session, limit=failures_limit)
    paused = await paused_queues(session)
    key_waiting = await waiting_counts(redis)
    tenants = await operator_queries.tenant_names(
        session, {job.tenant_id for job in [*running, *failed, *expired]}
    )
    owners = {job_id: worker.name for worker in workers for job_id in worker.running}
    return Inspection(
        at=datetime.now(UTC),
        workers=[_worker_view(worker) for worker in workers],
        running=[_running(job, tenants, owners) for job in running],
        queues=[QueueLine(**asdict(line)) for line in stats.depths],
        paused_queues=sorted(paused),
        scheduled_waiting=stats.scheduled_waiting,
        scheduled_overdue=stats.scheduled_overdue,
        concurrency_waiting=key_waiting,
        recent_failures=[_failed(job, tenants) for job in failed],
        recent_expirations=[_expired(job, tenants) for job in expired],
        job_types=[
            JobTypeLine(name=job_type.name, queues=list(job_type.queues)) for job_type in job_types
        ],
        rate_limited_types=await _rate_limited(redis, job_types),
    )


class JobInspection(BaseModel):
    """What `jobgate inspect JOB_ID` prints: one job of any tenant, and its attempts."""

    tenant: str
    job: JobOut
    attempts: list[AttemptOut] = Field(
        description="As `GET /jobs/{id}/attempts` lists them; a running attempt names the live "
        "worker that announced it runs the job."
    )


async def inspect_job(
    session: AsyncSession, redis: ArqRedis, job_id: uuid.UUID
) -> JobInspection | None:
    """Read one job, whichever tenant owns it, with its attempts; None if there is no such job."""
    tenant_id = await operator_queries.tenant_of_job(session, job_id)
    if tenant_id is None:
        return None
    try:
        job = await store.get_job(session, tenant_id=tenant_id, job_id=job_id)
        history = await read_attempts(session, tenant_id=tenant_id, job_id=job_id)
    except JobNotFound:  # purged between the reads
        return None
    tenants = await operator_queries.tenant_names(session, {tenant_id})
    owners = {
        running: worker.name for worker in await alive_workers(redis) for running in worker.running
    }
    owner = owners.get(str(job_id))
    return JobInspection(
        tenant=tenants.get(tenant_id, str(tenant_id)),
        job=await job_view(session, job),
        attempts=[
            attempt.model_copy(update={"worker": owner})
            if attempt.outcome == "running"
            else attempt
            for attempt in history.attempts
        ],
    )
