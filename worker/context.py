"""The contexts of the worker: what a worker holds (`WorkerContext`), what one run of a job
holds (`JobRunContext`), and what a job function gets (`JobContext`).

ARQ passes its `ctx` around as a plain dict; jobgate fills it in `on_startup` from a
`WorkerContext` (so every field is checked there), and `worker.loop` views it once per run as
a `JobRunContext`. Job code never sees either: it gets a `JobContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.settings import Settings

if TYPE_CHECKING:
    from shared.jobs.enqueue import Delivery
    from shared.jobs.retention import Retention
    from shared.jobs.status_changes import Success
    from worker.binding import Binding
    from worker.circuit import CircuitBreaker, Circuits
    from worker.group_commit import GroupCommit
    from worker.key_limits import KeySlot, KeyWait
    from worker.lease import Leases
    from worker.mail import Mailer
    from worker.maintenance import Maintenance
    from worker.quota import TenantQuotas
    from worker.scheduling import Promoter
    from worker.take import Taken
    from worker.tenant_data import TenantData


class WorkerContext(TypedDict):
    """ARQ's `ctx` of one worker (one queue), as jobgate's `on_startup` fills it."""

    redis: ArqRedis
    settings: Settings
    engine: AsyncEngine
    owns_engine: bool
    """Whether this worker disposes of `engine` at shutdown (a worker process shares one)."""
    sessionmaker: async_sessionmaker[AsyncSession]
    autocommit_sessionmaker: async_sessionmaker[AsyncSession]
    """Sessions without BEGIN/COMMIT, for the runner's single-statement status changes."""
    bindings: dict[str, Binding]
    retention: Retention
    """How long jobs of each bound type are kept once they end (an expiry in SQL needs it)."""
    worker_name: str
    system_tenant_id: uuid.UUID
    quotas: TenantQuotas
    leases: Leases
    successes: GroupCommit[Success, bool]
    """Records succeeded jobs, many per statement (True: the job was still running)."""
    background: list[asyncio.Task[None]]
    """The worker's own loops (leases, promotion, webhooks, reconciler, schedules)."""
    promoter: Promoter
    """Moves due jobs from the scheduled set onto their queues (one of `background`)."""


class JobRunContext(WorkerContext):
    """The context of one run of one job: the worker's, plus the job's place in Redis and what
    the run leaves for `worker.outcomes.after_attempt` once the job has ended there."""

    job_id: str
    job_try: int
    score: int
    """The job's score on its queue when taken: its place in line, kept if it is put back."""
    taken: Taken
    """The job as taken from its queue (type, tenant, key): what the admission steps go by."""
    reschedule: NotRequired[Delivery | None]
    """The job's next try (a retry, a put-back, a hand-back), enqueued after the run."""
    quota_slot: NotRequired[uuid.UUID]
    """The tenant whose concurrency slot the run holds, given back after the run."""
    key_slot: NotRequired[KeySlot]
    """The concurrency key whose slot the run holds, given back after the run."""
    key_wait: NotRequired[KeyWait]
    """The concurrency key the job waits for a slot of, turned away (`worker.key_limits`)."""


ProgressReporter = Callable[[int, int | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class JobContext:
    """Given to a job function: who the job is and how to report progress."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    max_tries: int
    worker_name: str
    report: ProgressReporter
    data: TenantData
    """The job's own tenant's data; a job function has no other way into PostgreSQL.

    Its calls, and the circuit breakers', raise `DependencyUnavailable` when jobgate's own
    PostgreSQL or Redis is unavailable; let it propagate: the runner then hands the attempt
    back without counting it (`worker.platform_failures`)."""
    mail: Mailer
    """Sends email through the configured SMTP server."""
    maintenance: Maintenance | None = None
    """Cross-tenant housekeeping; only for jobs of jobgate's own schedules (system tenant)."""
    soft_deadline: float | None = None
    """Event-loop time of the soft time limit, if the job type declares one."""
    circuits: Circuits | None = None
    """The circuit breakers shared by every worker; job code asks with `circuit(name)`."""

    def circuit(self, name: str) -> CircuitBreaker:
        """Breaker `name`: `async with job.circuit("smtp"): ...` refuses calls while it is open."""
        if self.circuits is None:
            raise RuntimeError("this job context has no circuit breakers")
        return self.circuits.get(name)

    @contextlib.asynccontextmanager
    async def soft_limit(self) -> AsyncIterator[None]:
        """Run the block until the soft time limit; then raise `SoftTimeLimitExceeded` in it.

        The hard limit (`timeout_seconds`) still stops the attempt later; the time between
        the two is for cleaning up, as with Celery's `soft_time_limit`.
        """
        if self.soft_deadline is None:
            yield
            return
        try:
            async with asyncio.timeout_at(self.soft_deadline):
                yield
        except TimeoutError as exc:
            raise SoftTimeLimitExceeded("the soft time limit passed") from exc

    async def progress(
        self, current: int, total: int | None = None, message: str | None = None
    ) -> None:
        """Record how far the job is; callers polling the job see it at once.

        Best effort: if PostgreSQL cannot take it, it is logged and dropped, never raised here
        (`worker.progress`); a later call records the progress as it is by then.
        """
        await self.report(current, total, message)


class SoftTimeLimitExceeded(TimeoutError):
    """Raised inside `JobContext.soft_limit()` blocks when the soft time limit passes."""


@dataclass(frozen=True)
class JobOutcome:
    """How an attempt ended, as lifecycle hooks see it (after it is recorded)."""

    status: Literal["succeeded", "retrying", "failed", "expired"]
    """`expired`: the retry would have started after the job's start deadline."""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retry_at: datetime | None = None


Hook = Callable[[JobContext, JobOutcome], Awaitable[None]]
"""`async def on_failure(job, outcome)`: a lifecycle callback (Celery's on_success & co.)."""
