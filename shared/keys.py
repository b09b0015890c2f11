"""Every Redis key jobgate reads or writes, in one place.

Job, result, in-progress and abort keys are ARQ's own (its workers read them); queue keys are
ours, one sorted set per named queue.
"""

from __future__ import annotations

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix

QUEUE_PREFIX = "jobgate:queue:"
SCHEDULED_SET = "jobgate:scheduled"
"""Jobs waiting for their time (delayed submits, retries), by due time; see `shared.enqueue`."""
ABORT_SET = abort_jobs_ss
RECONCILER_LOCK = "jobgate:reconciler-lock"
"""Held for one interval by the worker whose turn it is to reconcile (see worker.reconciler)."""


def queue_key(queue: str) -> str:
    """The ARQ queue (sorted set of job ids by run time) for a named jobgate queue."""
    return QUEUE_PREFIX + queue


def job_key(job_id: str) -> str:
    """Where ARQ keeps a queued job's payload."""
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    """Where ARQ keeps a finished job's result (jobgate keeps results in PostgreSQL)."""
    return result_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    """ARQ's lock on a job a worker is running."""
    return in_progress_key_prefix + job_id
