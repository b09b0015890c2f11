"""The dashboard's job actions: cancel, re-run, re-run a dead-letter group. Each is a form POST
(CSRF-checked) answered with a redirect to the page it came from, carrying a fixed notice.

The operator acts on a job as its own tenant would (the job's tenant id), through the same
`shared.jobs.control` functions as the API and the command line.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from gateway.deps import Resources, ResourcesDep, SessionDep
from gateway.ui import queries as dashboard
from gateway.ui.access import PostedForm, Viewer, ViewerDep
from gateway.ui.templating import render
from shared.errors import JobStateConflict, QueueUnavailable, RateLimited
from shared.jobs import control
from shared.tenants.apikeys import Scope
from shared.tenants.ratelimit import RateLimit, charge, rate_limit_for

router = APIRouter()
MAX_BULK_RETRY = 500
"""Jobs one bulk re-run submits; the group stays listed while more remain."""


def _rate_of(viewer: Viewer, resources: Resources) -> RateLimit | None:
    """The signed-in tenant's rate limit: its re-runs spend its tokens, as its submits do.

    None for the operator, who acts across tenants to repair (as `jobgate dlq retry` does).
    """
    if viewer.principal is None:
        return None
    return rate_limit_for(viewer.principal.limits, resources.settings)


def _back_to(job_id: uuid.UUID, notice: str) -> Response:
    return RedirectResponse(f"/ui/jobs/{job_id}?notice={notice}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
async def cancel(
    request: Request,
    job_id: uuid.UUID,
    viewer: ViewerDep,
    form: PostedForm,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    job = await dashboard.find_job(session, tenant=viewer.tenant, job_id=job_id)
    if job is None:
        return render(request, "not_found.html", viewer, status_code=404)
    if not viewer.can(Scope.CANCEL):
        return _back_to(job_id, "forbidden")
    try:
        outcome = await control.cancel_job(
            session,
            resources.redis,
            tenant_id=job.tenant_id,
            job_id=job_id,
            registry=resources.registry,
            settings=resources.settings,
        )
    except JobStateConflict:
        return _back_to(job_id, "conflict")
    return _back_to(job_id, "cancelled" if outcome.is_done else "cancel-requested")


@router.post("/jobs/{job_id}/retry")
async def retry(
    request: Request,
    job_id: uuid.UUID,
    viewer: ViewerDep,
    form: PostedForm,
    session: SessionDep,
    resources: ResourcesDep,
) -> Response:
    job = await dashboard.find_job(session, tenant=viewer.tenant, job_id=job_id)
    if job is None:
        return render(request, "not_found.html", viewer, status_code=404)
    if not viewer.can(Scope.SUBMIT):
        return _back_to(job_id, "forbidden")
    try:
        new = await control.retry_job(
            session,
            resources.redis,
            tenant_id=job.tenant_id,
            job_id=job_id,
            registry=resources.registry,
            rate=_rate_of(viewer, resources),
            settings=resources.settings,
        )
    except JobStateConflict:
        return _back_to(job_id, "conflict")
    except RateLimited:
        return _back_to(job_id, "rate-limited")
    except QueueUnavailable:  # undone: the job is as it was, and can be re-run again
        return _back_to(job_id, "unavailable")
    return _back_to(new.id, "retried")


@router.post("/dead-letters/retry")
async def retry_group(
    viewer: ViewerDep, form: PostedForm, session: SessionDep, resources: ResourcesDep
) -> Response:
    """Re-run every failed, not yet re-run job of one type and error type."""
    if not viewer.can(Scope.SUBMIT):
        return RedirectResponse("/ui/dead-letters?notice=forbidden", status_code=303)
    jobs = await dashboard.dead_letters_of_group(
        session,
        tenant=viewer.tenant,
        name=str(form.get("name", "")),
        error_type=str(form.get("error_type", "")),
        limit=MAX_BULK_RETRY,
    )
    targets = [(job.tenant_id, job.id) for job in jobs]  # read before commits expire them
    if viewer.principal is not None and targets:
        # A tenant's group at once, as a batch submit: all its tokens, or none and no re-run.
        try:
            await charge(
                resources.redis,
                tenant_id=viewer.principal.tenant_id,
                rate=_rate_of(viewer, resources),
                cost=len(targets),
            )
        except RateLimited:
            return RedirectResponse("/ui/dead-letters?notice=rate-limited", status_code=303)
        except QueueUnavailable:
            return RedirectResponse("/ui/dead-letters?notice=retried-some&count=0", 303)
    retried, notice = 0, "retried-many"
    for tenant_id, job_id in targets:
        try:
            await control.retry_job(
                session,
                resources.redis,
                tenant_id=tenant_id,
                job_id=job_id,
                registry=resources.registry,
                rate=None,  # charged above
                settings=resources.settings,
            )
        except JobStateConflict:  # re-run meanwhile by someone else: nothing to do
            await session.rollback()
            continue
        except QueueUnavailable:  # this one was undone; the rest stay listed for a next try
            notice = "retried-some"
            break
        retried += 1
    return RedirectResponse(f"/ui/dead-letters?notice={notice}&count={retried}", status_code=303)
