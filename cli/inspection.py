"""What `jobgate inspect` shows: the operator's view of the whole system, every tenant at once.

Workers and queues come from Redis (`shared.presence`, `shared.jobs.queue_stats`); running jobs,
recent failures and paused queues from PostgreSQL, where every job's truth is. A running job
names its worker when a live worker's announcement lists it (a job whose worker died shows none
until its lease lapses and another worker takes it).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime

from arq.connections import ArqRedis
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from shared.jobs import operator_queries
from shared.jobs.key_waits import waiting_counts
from shared.jobs.queue_pauses import paused_queues
from shared.jobs.queue_stats import read_queue_stats
from shared.models import Job
from shared.presence import WorkerPresence, alive_workers


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


async def inspect_system(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    queues: list[str],
    running_limit: int = 50,
    failures_limit: int = 10,
) -> Inspection:
    """Read workers, queues, running jobs and recent failures (`queues`: at least these)."""
    workers = await alive_workers(redis)
    served = {queue for worker in workers for queue in worker.queues}
    stats = await read_queue_stats(redis, sorted(set(queues) | served))
    running = await operator_queries.running_jobs(session, limit=running_limit)
    failed = await operator_queries.failed_jobs(session, limit=failures_limit)
    paused = await paused_queues(session)
    key_waiting = await waiting_counts(redis)
    tenants = await operator_queries.tenant_names(
        session, {job.tenant_id for job in [*running, *failed]}
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
    )
