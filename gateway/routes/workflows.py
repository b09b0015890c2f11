"""`/workflows`: submit a chain / group / chord of jobs, read it, cancel it, resume it."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import CancelAuth, ReadAuth, SubmitAuth, authenticated_first, check_api_key
from gateway.deps import RedisDep, ResourcesDep, SessionDep
from gateway.problems import problems, rate_limit_headers
from gateway.workflow_view import WorkflowOut, workflow_view
from shared.tenants.ratelimit import charge, rate_limit_for
from shared.tenants.tenancy import Principal
from shared.webhooks.destinations import refuse_webhook_urls
from shared.workflows import runs
from shared.workflows.spec import WorkflowNode, steps_of

# The key is checked before a body is read; each route's dependency then checks its scope.
router = APIRouter(tags=["workflows"], route_class=authenticated_first(check_api_key))


class WorkflowSubmission(BaseModel):
    """A workflow to run: a tree of `chain`, `group`, `chord` and `step` nodes."""

    model_config = ConfigDict(extra="forbid")

    workflow: WorkflowNode = Field(
        description="The root node. Each step is a job of a registered type (`GET /job-types`)."
    )


def _loc(pointer: str) -> list[str | int]:
    """A step's JSON pointer in the definition as a 422 `loc` (as `check_workflow` gives)."""
    where = [int(part) if part.isdigit() else part for part in pointer.split("/")[1:]]
    return ["body", "workflow", *where]


async def _charge(principal: Principal, resources: ResourcesDep, steps: int) -> dict[str, str]:
    """Take one rate-limit token per step, as a batch does per job (before storing anything)."""
    rate = rate_limit_for(principal.limits, resources.settings)
    state = await charge(resources.redis, tenant_id=principal.tenant_id, rate=rate, cost=steps)
    if state is None:
        return {}
    return rate_limit_headers(
        limit=state.limit, remaining=state.remaining, reset_seconds=state.reset_seconds
    )


@router.post(
    "/workflows",
    status_code=202,
    operation_id="submit_workflow",
    responses=problems(401, 403, 413, 415, 422, 429, 503),
)
async def submit_workflow(
    body: WorkflowSubmission,
    principal: SubmitAuth,
    session: SessionDep,
    redis: RedisDep,
    resources: ResourcesDep,
    response: Response,
) -> WorkflowOut:
    """Check every step against its job type, store the workflow and start its first steps.

    A step's `args_from` maps its args to its input: `$` (all of it), `name` (a field of the
    previous step's result) or `*.name` (that field of each result of a group). Anything that
    cannot run (unknown type, args or sources that do not fit) is a 422 before anything is
    stored.
    """
    refuse_webhook_urls(
        resources.settings.webhooks,
        (
            ([*_loc(pointer), "options", "webhook_url"], step.options.webhook_url)
            for pointer, step in steps_of(body.workflow)
        ),
    )
    headers = await _charge(principal, resources, sum(1 for _ in steps_of(body.workflow)))
    workflow = await runs.submit_workflow(
        session,
        redis,
        tenant_id=principal.tenant_id,
        definition=body.workflow,
        registry=resources.registry,
        settings=resources.settings,
    )
    for _, step in steps_of(body.workflow):  # each step is a job accepted now, run later
        job_type = resources.registry.get(step.job)
        resources.jobs_submitted.labels(job_type.name, job_type.queue_for(step.options.queue)).inc()
    response.headers.update(headers | {"Location": f"/workflows/{workflow.id}"})
    return await workflow_view(session, workflow)


@router.get(
    "/workflows/{workflow_id}",
    operation_id="get_workflow",
    responses=problems(401, 403, 404, 422),
)
async def read_workflow(
    workflow_id: uuid.UUID, principal: ReadAuth, session: SessionDep
) -> WorkflowOut:
    """A workflow with each step's current job and the overall status."""
    workflow = await runs.find_workflow(
        session, tenant_id=principal.tenant_id, workflow_id=workflow_id
    )
    return await workflow_view(session, workflow)


@router.post(
    "/workflows/{workflow_id}/cancel",
    operation_id="cancel_workflow",
    responses=problems(401, 403, 404, 409, 422, 503),
)
async def cancel_workflow(
    workflow_id: uuid.UUID,
    principal: CancelAuth,
    session: SessionDep,
    redis: RedisDep,
    resources: ResourcesDep,
) -> WorkflowOut:
    """Cancel a running workflow: no further step starts, unfinished steps are cancelled."""
    workflow = await runs.cancel_workflow(
        session,
        redis,
        tenant_id=principal.tenant_id,
        workflow_id=workflow_id,
        registry=resources.registry,
        settings=resources.settings,
    )
    return await workflow_view(session, workflow)


@router.post(
    "/workflows/{workflow_id}/retry",
    operation_id="retry_workflow",
    responses=problems(401, 403, 404, 409, 422, 429, 503),
)
async def retry_workflow(
    workflow_id: uuid.UUID,
    principal: SubmitAuth,
    session: SessionDep,
    redis: RedisDep,
    resources: ResourcesDep,
) -> WorkflowOut:
    """Resume a failed or cancelled workflow from its failed, cancelled or expired steps;
    succeeded ones are kept.

    Each re-run step takes a token of the tenant's rate limit (429 when short: nothing re-run);
    Redis refusing the new jobs is a 503 that leaves the workflow as it was.
    """
    workflow = await runs.retry_workflow(
        session,
        redis,
        tenant_id=principal.tenant_id,
        workflow_id=workflow_id,
        registry=resources.registry,
        rate=rate_limit_for(principal.limits, resources.settings),
        settings=resources.settings,
    )
    return await workflow_view(session, workflow)
