"""Job statuses and the transitions allowed between them (they only move forward)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """Whether the job will never change again."""
        return self in TERMINAL


TERMINAL = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)
WAITING = frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RETRYING})

# RUNNING -> RUNNING is a re-delivery: a worker died mid-job and ARQ hands the job to another.
CLAIMABLE = WAITING | {JobStatus.RUNNING}

ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.RUNNING: CLAIMABLE,
    JobStatus.RETRYING: frozenset({JobStatus.RUNNING}),
    JobStatus.SUCCEEDED: frozenset({JobStatus.RUNNING}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}) | WAITING,
    JobStatus.CANCELLED: WAITING | {JobStatus.RUNNING},
    # From `running` only at a claim (a re-delivery after a lost worker) or instead of a retry:
    # both would start the job again after its start deadline. The sweep takes waiting jobs.
    JobStatus.EXPIRED: CLAIMABLE,
}
"""For each target status, the statuses a job may move to it from."""

UNSUCCESSFUL = TERMINAL - {JobStatus.SUCCEEDED}
"""Ended without a result: such a job can be re-run, and as a workflow step it fails its
workflow."""
