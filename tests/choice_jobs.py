"""A test-only job type whose caller and code choose: the queue it runs on, the delay before
its retry (issue 22 §6).

Declared with `JobType(...)`, so it is not in the registry for the whole test session (the
OpenAPI drift test would see its routes): `declared(UPSTREAM_CALL)` registers it for one test.
Worker processes load it as a deployment loads its own types:
`JOBGATE_CONTRACT_MODULES=tests.choice_jobs_contract` and `JOBGATE_JOB_MODULES=tests.choice_jobs`
(`WORKER_MODULES`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.contracts import Backoff, Contract, JobType
from shared.errors import RetryableJobError
from worker.binding import implements
from worker.context import JobContext

WORKER_MODULES = {
    "contract_modules": "tests.choice_jobs_contract",
    "job_modules": "tests.choice_jobs",
}
"""`spawn_worker` keywords that make a worker process run `upstream_call`."""
BACKOFF_SECONDS = 600.0
"""The type's backoff: a retry that came sooner was scheduled by the job's own delay."""


class UpstreamCallArgs(Contract):
    busy_times: Annotated[
        int, Field(ge=0, le=5, description="Attempts that find the upstream busy.")
    ] = 0
    retry_after_seconds: Annotated[
        float | None,
        Field(ge=0, le=3600, description="The busy upstream's `Retry-After`; null: none."),
    ] = None


class UpstreamCallResult(Contract):
    attempt: Annotated[int, Field(description="The attempt that got through (1-based).")]
    worker: Annotated[str, Field(description="The worker that ran it (`host:pid`).")]


UPSTREAM_CALL = JobType(
    name="upstream_call",
    args=UpstreamCallArgs,
    result=UpstreamCallResult,
    description="Call an upstream that may be busy; retried when its `Retry-After` says.",
    queues=("default", "bulk"),
    max_tries=3,
    timeout_seconds=10.0,
    backoff=Backoff(base_seconds=BACKOFF_SECONDS, max_seconds=BACKOFF_SECONDS, jitter=0),
)


@implements(UPSTREAM_CALL)
async def upstream_call(job: JobContext, args: UpstreamCallArgs) -> UpstreamCallResult:
    if job.attempt <= args.busy_times:
        raise RetryableJobError("the upstream is busy", delay_seconds=args.retry_after_seconds)
    return UpstreamCallResult(attempt=job.attempt, worker=job.worker_name)
