"""Every Redis key jobgate reads or writes, in one place.

Job, result, in-progress and abort keys are ARQ's own (its workers read them); queue keys are
ours, one sorted set per named queue.
"""

from __future__ import annotations

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix

QUEUE_PREFIX = "jobgate:queue:"
SCHEDULED_SET = "jobgate:scheduled"
"""Jobs waiting for their time (delayed submits, retries), by due time (`shared.jobs.enqueue`)."""
ABORT_SET = abort_jobs_ss
RECONCILER_LOCK = "jobgate:reconciler-lock"
"""Held for one interval by the worker whose turn it is to reconcile (see worker.reconciler)."""
VCLOCK_PREFIX = "jobgate:vclock:"
"""Per tenant: the virtual start time of its next job (fair queuing; see `shared.jobs.enqueue`)."""
RATE_LIMIT_PREFIX = "jobgate:ratelimit:"
RUNNING_PREFIX = "jobgate:running:"
JOB_RATE_PREFIX = "jobgate:job-rate:"
JOB_RATE_KEYED_PREFIX = "jobgate:job-rate-key:"
JOB_RATE_BOOKING_PREFIX = "jobgate:job-rate-booking:"
KEY_RUNNING_PREFIX = "jobgate:key-running:"
KEY_WAITING_PREFIX = "jobgate:key-waiting:"
KEY_WAITING_INDEX = "jobgate:key-waiting-index"
"""Hash: the scope of every concurrency key with jobs waiting -> `<limit>:<job type>`, so a
reconciler pass finds the waiters whose wake-up was lost (`worker.key_limits`)."""
KEY_WAITING_COUNTS = "jobgate:key-waiting-counts"
"""Hash: job type -> how many of its jobs wait for a concurrency key (the gateway's gauge)."""
CIRCUIT_PREFIX = "jobgate:circuit:"
CIRCUIT_FAILURES_PREFIX = "jobgate:circuit-failures:"
WORKERS_SET = "jobgate:workers"
"""Names of worker processes that announced themselves (see `shared.presence`)."""
WORKER_PRESENCE_PREFIX = "jobgate:worker:"


def queue_key(queue: str) -> str:
    """The ARQ queue (sorted set of job ids by run time) for a named jobgate queue."""
    return QUEUE_PREFIX + queue


WAKE_PREFIX = "jobgate:wake:"
PAUSED_QUEUES = "jobgate:paused-queues"
"""Hash: paused queue -> when it was paused. Workers take nothing from a queue listed here; a
mirror of PostgreSQL's `queue_pause`, rewritten by the reconciler (`shared.jobs.queue_pauses`)."""
UI_SESSION_PREFIX = "jobgate:ui-session:"


def wake_key(queue: str) -> str:
    """Tokens announcing newly due jobs on a queue; idle workers block on it (worker.loop)."""
    return WAKE_PREFIX + queue


def ui_session_key(session_digest: str) -> str:
    """A dashboard session, under the SHA-256 of its cookie (see `gateway.ui.sessions`)."""
    return UI_SESSION_PREFIX + session_digest


def job_key(job_id: str) -> str:
    """Where ARQ keeps a queued job's payload."""
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    """Where ARQ keeps a finished job's result (jobgate keeps results in PostgreSQL)."""
    return result_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    """ARQ's lock on a job a worker is running."""
    return in_progress_key_prefix + job_id


def circuit_key(name: str) -> str:
    """A circuit breaker's state (hash: state, until, trials), shared by every worker."""
    return CIRCUIT_PREFIX + name


def circuit_failures_key(name: str) -> str:
    """A closed circuit breaker's recent failures (sorted set, scored by time in ms)."""
    return CIRCUIT_FAILURES_PREFIX + name


def vclock_key(tenant_id: str) -> str:
    """A tenant's virtual clock (ms): where its next job starts in fair-queuing order."""
    return VCLOCK_PREFIX + tenant_id


def rate_limit_key(tenant_id: str) -> str:
    """A tenant's submit token bucket (hash: tokens, at), see `shared.tenants.ratelimit`."""
    return RATE_LIMIT_PREFIX + tenant_id


def job_rate_key(job_type: str, *, scope: str | None = None) -> str:
    """A job type's rate-limit schedule: its next free start (µs, Redis time); a keyed limit
    has one per `scope` (a digest of tenant and key value). See `shared.rate_limiter`."""
    if scope is None:
        return JOB_RATE_PREFIX + job_type
    return JOB_RATE_KEYED_PREFIX + scope


def job_rate_booking_key(job_id: str) -> str:
    """The start a rate-limited job booked and waits for (µs, Redis time)."""
    return JOB_RATE_BOOKING_PREFIX + job_id


def running_key(tenant_id: str) -> str:
    """A tenant's running jobs (sorted set of job ids), for its concurrency quota."""
    return RUNNING_PREFIX + tenant_id


def concurrency_scope(tenant_id: str, job_type: str, key: str) -> str:
    """Where a concurrency key holds: per tenant and job type (two tenants' `42` never meet)."""
    return f"{tenant_id}:{job_type}:{key}"


def key_running_key(scope: str) -> str:
    """The jobs holding a slot of a concurrency key (sorted set of job ids, `worker.slots`)."""
    return KEY_RUNNING_PREFIX + scope


def key_waiting_key(scope: str) -> str:
    """The jobs waiting for a slot of a concurrency key (`shared.jobs.key_waits`)."""
    return KEY_WAITING_PREFIX + scope


def worker_presence_key(name: str) -> str:
    """A worker process's last announcement (JSON), expiring unless renewed: it is alive."""
    return WORKER_PRESENCE_PREFIX + name
