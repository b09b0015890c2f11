"""A typed client for jobgate's HTTP API: submit jobs, wait for them, read their results.

    from jobgate_client import JobgateClient

    with JobgateClient("http://127.0.0.1:8000", api_key) as jobgate:
        job = jobgate.submit("echo", {"message": "hi"}, labels={"order": "42"})
        done = jobgate.wait(job.id, timeout=30)
        print(done.status, done.result)

`AsyncJobgateClient` has the same methods, as coroutines.
"""

from jobgate_client.async_client import AsyncJobgateClient
from jobgate_client.client import JobgateClient
from jobgate_client.errors import JobgateError, JobWaitTimeout, ValidationIssue
from jobgate_client.models import (
    TERMINAL_STATUSES,
    Attempt,
    AttemptOutcome,
    Job,
    JobError,
    JobPage,
    JobProgress,
    JobRequest,
    JobStatus,
    Priority,
    SubmitOptions,
)

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncJobgateClient",
    "Attempt",
    "AttemptOutcome",
    "Job",
    "JobError",
    "JobPage",
    "JobProgress",
    "JobRequest",
    "JobStatus",
    "JobWaitTimeout",
    "JobgateClient",
    "JobgateError",
    "Priority",
    "SubmitOptions",
    "ValidationIssue",
]
