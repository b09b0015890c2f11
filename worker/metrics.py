"""The worker's Prometheus metrics (served on `JOBGATE_WORKER_METRICS_PORT` when set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_FINISHED = Counter(
    "jobgate_worker_jobs_finished_total",
    "Attempts that ended, by job type and outcome (succeeded, failed, retrying).",
    ["job_type", "outcome"],
)
JOB_DURATION = Histogram(
    "jobgate_worker_job_duration_seconds",
    "Time spent in job functions, by job type.",
    ["job_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
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
