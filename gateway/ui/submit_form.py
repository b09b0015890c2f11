"""Submitting a job from the dashboard: a form per job type, generated from its Args schema.

The submit itself is `shared.jobs.submit.create_jobs`, after the tenant's rate limit, as for
`POST /jobs/{name}`: a job from the browser is stored, enqueued and limited like any other.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from gateway.deps import Resources, ResourcesDep, SessionDep
from gateway.ui.access import PostedForm, Viewer, ViewerDep
from gateway.ui.forms import form_fields, validate_args, validate_options
from gateway.ui.templating import render
from shared.contracts import JobType
from shared.errors import QueueUnavailable, RateLimited, UnknownJobType
from shared.jobs.submit import InSession, Submission, create_jobs
from shared.tenants.apikeys import Scope
from shared.tenants.ratelimit import rate_limit_for, take_tokens

router = APIRouter()
PRIORITIES = ("critical", "default", "low")


def _public_type(resources: Resources, name: str) -> JobType[Any, Any] | None:
    try:
        job_type = resources.registry.get(name)
    except UnknownJobType:
        return None
    return None if job_type.is_internal else job_type


def _refusal(viewer: Viewer) -> str | None:
    """Why this viewer cannot submit, if it cannot."""
    if viewer.principal is None:
        return "Jobs belong to a tenant: sign in with a tenant's API key to submit one."
    if not viewer.can(Scope.SUBMIT):
        return f"Your key lacks the `{Scope.SUBMIT.value}` scope."
    return None


@router.get("/submit")
async def job_types(request: Request, viewer: ViewerDep, resources: ResourcesDep) -> Response:
    return render(
        request,
        "submit_index.html",
        viewer,
        job_types=resources.registry.public(),
        refusal=_refusal(viewer),
    )


def _form_page(
    request: Request,
    viewer: Viewer,
    job_type: JobType[Any, Any],
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "submit.html",
        viewer,
        status_code=status_code,
        job_type=job_type,
        fields=form_fields(job_type.args),
        priorities=PRIORITIES,
        values=values,
        errors=errors or {},
        refusal=_refusal(viewer),
    )


@router.get("/submit/{name}")
async def submit_page(
    request: Request, name: str, viewer: ViewerDep, resources: ResourcesDep
) -> Response:
    job_type = _public_type(resources, name)
    if job_type is None:
        return render(request, "not_found.html", viewer, status_code=404)
    return _form_page(request, viewer, job_type)


@router.post("/submit/{name}")
async def submit(
    request: Request,
    name: str,
    viewer: ViewerDep,
    form: PostedForm,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    job_type = _public_type(resources, name)
    if job_type is None:
        return render(request, "not_found.html", viewer, status_code=404)
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    principal = viewer.principal
    if principal is None or _refusal(viewer) is not None:
        return _form_page(request, viewer, job_type, values=values, status_code=403)
    args, errors = validate_args(job_type, form)
    options, option_errors = validate_options(job_type, form)
    errors |= option_errors
    if args is None or options is None:
        return _form_page(request, viewer, job_type, values=values, errors=errors, status_code=422)
    try:
        rate = rate_limit_for(principal.limits, resources.settings)
        if rate is not None:
            await take_tokens(resources.redis, tenant_id=principal.tenant_id, rate=rate, cost=1)
        created = await create_jobs(
            resources.redis,
            InSession(session, principal.tenant_id, settings=resources.settings),
            Submission(job_type, [(args, options)]),  # type: ignore[list-item]
        )
    except (RateLimited, QueueUnavailable) as exc:  # say so on the form, keep what was typed
        status_code = 429 if isinstance(exc, RateLimited) else 503
        errors = {"__all__": exc.message}
        return _form_page(
            request, viewer, job_type, values=values, errors=errors, status_code=status_code
        )
    (row,) = created.rows
    resources.jobs_submitted.labels(job_type.name, row["queue"]).inc()
    return RedirectResponse(f"/ui/jobs/{row['id']}?notice=submitted", status_code=303)
