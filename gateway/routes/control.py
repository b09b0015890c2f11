"""`/jobs/{id}/cancel` and `/jobs/{id}/retry`: changing a job's course."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from gateway.auth import CancelAuth, SubmitAuth
from gateway.deps import RedisDep, ResourcesDep, SessionDep
from gateway.problems import problems
from gateway.routes.submit_schema import SUBMIT_PROBLEMS
from gateway.schemas import JobOut
from shared.jobs import control
from shared.jobs.view import job_view
from shared.tenants.ratelimit import rate_limit_for

router = APIRouter(tags=["jobs"])
RETRY_PROBLEMS = problems(401, 403, 404, 409, 422, 429, 503)
RETRY_PROBLEMS[429] = SUBMIT_PROBLEMS[429] | {
    "description": "The tenant creates jobs faster than its rate limit (a re-run counts as one"
    " job); nothing was re-run. Retry after `Retry-After` seconds."
}
RETRY_PROBLEMS[503]["description"] = (
    "Redis or PostgreSQL is unavailable; nothing was re-run, and the job can be re-run again."
)


@router.post(
    "/jobs/{job_id}/cancel",
    operation_id="cancel_job",
    summary="Cancel a job",
    responses={
        202: {"model": JobOut, "description": "Abort requested; the job is still `running`."},
        **problems(401, 403, 404, 409, 422, 503),
    },
)
async def cancel_job(
    job_id: uuid.UUID,
    principal: CancelAuth,
    session: SessionDep,
    redis: RedisDep,
    resources: ResourcesDep,
    response: Response,
) -> JobOut:
    """Cancel a job: a waiting job never runs (200); a running one is aborted (202)."""
    outcome = await control.cancel_job(
        session,
        redis,
        tenant_id=principal.tenant_id,
        job_id=job_id,
        registry=resources.registry,
        settings=resources.settings,
    )
    if outcome.is_done:  # a running job is counted by the worker that stops it
        resources.jobs_cancelled.labels(outcome.job.name, outcome.job.queue).inc()
    response.status_code = 200 if outcome.is_done else 202
    return await job_view(session, outcome.job)


@router.post(
    "/jobs/{job_id}/retry",
    status_code=201,
    operation_id="retry_job",
    summary="Re-run a failed, cancelled or expired job",
    responses=RETRY_PROBLEMS,
)
async def retry_job(
    job_id: uuid.UUID,
    principal: SubmitAuth,
    session: SessionDep,
    redis: RedisDep,
    resources: ResourcesDep,
    response: Response,
) -> JobOut:
    """Re-run a failed, cancelled or expired job as a new job with the same args (201, linked
    both ways). The new job's start deadline is its type's default, counted from now, or none.

    A step of a workflow is re-run by retrying its workflow (`POST /workflows/{id}/retry`):
    here it is a 409. The new job takes a token of the tenant's rate limit, as a submit does.
    """
    job = await control.retry_job(
        session,
        redis,
        tenant_id=principal.tenant_id,
        job_id=job_id,
        registry=resources.registry,
        rate=rate_limit_for(principal.limits, resources.settings),
        settings=resources.settings,
    )
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobOut.of(job)
