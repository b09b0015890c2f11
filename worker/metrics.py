"""The worker's Prometheus metrics, served on `JOBGATE_WORKER_METRICS_PORT` (default 9464).

Labels never name a tenant or a job: `job_type` and `queue` come from code, `error_type` is an
exception's class name or one of jobgate's own slugs (`timeout`, `permanent`, `worker_lost`).
The runner calls `record_start` once a job is claimed and `record_outcome` once its outcome is
recorded: both work from the job row it already holds, so they cost no round trip.
"""

from __future__ import annotations

import functools
from datetime import datetime

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from shared.jobs.rows import ClaimedJob

log = structlog.get_logger("jobgate.worker")

# Milliseconds for quick jobs and short waits, up to an hour for long jobs and deep backlogs.
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

JOBS_SUCCEEDED = Counter(
    "jobgate_jobs_succeeded_total", "Jobs that succeeded, by job type.", ["job_type", "queue"]
)
JOBS_FAILED = Counter(
    "jobgate_jobs_failed_total",
    "Jobs that failed for good (now in the dead-letter view), by job type and error type.",
    ["job_type", "queue", "error_type"],
)
JOBS_RETRIED = Counter(
    "jobgate_jobs_retried_total",
    "Failed attempts that will be tried again, by job type and error type.",
    ["job_type", "queue", "error_type"],
)
JOBS_CANCELLED = Counter(
    "jobgate_jobs_cancelled_total",
    "Jobs cancelled (the gateway counts waiting ones, workers running ones).",
    ["job_type", "queue"],
)
JOBS_EXPIRED = Counter(
    "jobgate_jobs_expired_total",
    "Jobs that ended `expired`: not started by their start deadline, by job type.",
    ["job_type", "queue"],
)
JOB_DURATION = Histogram(
    "jobgate_job_run_seconds",
    "Time an attempt spent in its job function, by job type.",
    ["job_type"],
    buckets=_SECONDS_BUCKETS,
)
JOB_QUEUE_WAIT = Histogram(
    "jobgate_job_queue_wait_seconds",
    "From when a job was due (submitted, or its delay or retry time) to when it started.",
    ["job_type"],
    buckets=_SECONDS_BUCKETS,
)
CIRCUIT_STATE = Gauge(
    "jobgate_circuit_state",
    "Circuit breaker state as this worker last saw it: 0 closed, 1 half-open, 2 open.",
    ["name"],
)
CIRCUIT_REJECTED = Counter(
    "jobgate_circuit_rejected_total",
    "Calls a circuit breaker refused (open, or half-open with its trial taken), by breaker.",
    ["name"],
)
QUOTA_DEFERRALS = Counter(
    "jobgate_worker_quota_deferrals_total",
    "Jobs put back in line, not run, because their tenant was at its concurrency quota.",
)
RATE_LIMITED = Counter(
    "jobgate_rate_limited_total",
    "Jobs that had to wait for a start of their type's rate limit (no try used), by job type.",
    ["job_type"],
)
KEY_WAITS = Counter(
    "jobgate_worker_concurrency_waits_total",
    "Jobs not run when taken because their concurrency key was at its limit; each waits, off"
    " its queue, until a slot of its key frees.",
    ["job_type"],
)


# Every job passes here: the labelled children are looked up once per type, not per job
# (`labels()` takes a lock and validates its arguments each call).
@functools.cache
def _queue_wait(job_type: str) -> Histogram:
    return JOB_QUEUE_WAIT.labels(job_type)


@functools.cache
def _succeeded(job_type: str, queue: str) -> Counter:
    return JOBS_SUCCEEDED.labels(job_type, queue)


def record_start(job: ClaimedJob) -> None:
    """A claimed job starts: how long it waited since it was due."""
    due: datetime | None = job.scheduled_at or job.created_at
    if job.started_at is not None and due is not None:
        # Submit times come from the gateway's clock, start times from PostgreSQL's.
        _queue_wait(job.name).observe(max((job.started_at - due).total_seconds(), 0.0))


def record_outcome(job: ClaimedJob, outcome: str, error_type: str | None = None) -> None:
    """An outcome (`succeeded`, `retrying`, `failed`, `cancelled`, `expired`) was recorded."""
    if outcome == "succeeded":
        _succeeded(job.name, job.queue).inc()
    elif outcome == "cancelled":
        JOBS_CANCELLED.labels(job.name, job.queue).inc()
    elif outcome == "expired":
        JOBS_EXPIRED.labels(job.name, job.queue).inc()
    else:
        counter = JOBS_FAILED if outcome == "failed" else JOBS_RETRIED
        counter.labels(job.name, job.queue, error_type or "unknown").inc()


def serve_metrics(port: int) -> bool:
    """Serve this process's metrics on `port` (0: not at all); False if the port is taken.

    A taken port (another worker on the same host) costs this worker its metrics, not its jobs.
    """
    if port == 0:
        return False
    try:
        start_http_server(port)
    except OSError as exc:
        log.warning("worker.metrics_unavailable", port=port, error=type(exc).__name__)
        return False
    log.info("worker.metrics_serving", port=port)
    return True
