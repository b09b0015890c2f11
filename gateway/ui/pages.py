"""The dashboard's pages: overview, jobs (list and one job), dead letters. Reads only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from gateway.deps import Resources, ResourcesDep, SessionDep
from gateway.pagination import encode_cursor
from gateway.ui import queries as dashboard
from gateway.ui.access import Viewer, ViewerDep
from gateway.ui.charts import throughput_chart
from gateway.ui.job_filters import read_filters
from gateway.ui.notices import notice_of
from gateway.ui.templating import render
from shared.jobs.attempts import read_attempts
from shared.jobs.queue_pauses import paused_queues
from shared.jobs.queue_stats import read_queue_stats
from shared.jobs.schedules import SCHEDULES
from shared.models import Job
from shared.presence import alive_workers
from shared.status import UNSUCCESSFUL, JobStatus
from shared.tenants.apikeys import Scope

router = APIRouter()
BUCKET = timedelta(minutes=5)
BUCKETS = 12
"""The overview's chart: the last hour, in five-minute bars (the last one still filling)."""
MAX_RUNNING_SHOWN = 20


def _chart_start(now: datetime) -> datetime:
    floor = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    return floor - (BUCKETS - 1) * BUCKET


@router.get("")
async def overview(
    request: Request, viewer: ViewerDep, session: SessionDep, resources: ResourcesDep
) -> Response:
    now = datetime.now(UTC)
    buckets = await dashboard.throughput(
        session, tenant=viewer.tenant, since=_chart_start(now), bucket=BUCKET, buckets=BUCKETS
    )
    workers = await alive_workers(resources.redis)
    running = await dashboard.running_jobs(session, tenant=viewer.tenant, limit=MAX_RUNNING_SHOWN)
    return render(
        request,
        "overview.html",
        viewer,
        waiting=await dashboard.waiting_counts(session, tenant=viewer.tenant),
        # Redis holds every tenant's queued ids: only the operator sees those lines.
        queue_stats=await read_queue_stats(resources.redis, resources.registry.queues())
        if viewer.is_admin
        else None,
        chart=throughput_chart(buckets),
        workers=workers,
        running=running,
        worker_of={job_id: worker.name for worker in workers for job_id in worker.running},
        schedules=[(item, item.next_tick(now)) for item in SCHEDULES],
        tenants=await _tenant_names(session, viewer),
        paused=await paused_queues(session) if viewer.is_admin else {},
        notice=notice_of(request.query_params),
    )


async def _tenant_names(session: AsyncSession, viewer: Viewer) -> dict[uuid.UUID, str]:
    """Tenant names for the operator's tenant column; a tenant sees only its own jobs."""
    return await dashboard.tenant_names(session) if viewer.is_admin else {}


async def _jobs_context(
    request: Request, viewer: Viewer, session: AsyncSession, resources: Resources
) -> dict[str, Any]:
    filters, query, picked_tenant = read_filters(request.query_params)
    tenant = picked_tenant if viewer.is_admin and picked_tenant else viewer.tenant
    jobs = await dashboard.list_jobs(session, tenant=tenant, query=query)
    page, more = jobs[: query.limit], len(jobs) > query.limit
    return {
        "filters": filters,
        "jobs": page,
        "next_params": filters.params(cursor=encode_cursor(page[-1].id)) if more else None,
        # Only the first page updates itself: on later pages new jobs would shift the rows.
        "is_live": not filters.cursor,
        "statuses": [status.value for status in JobStatus],
        # Internal types too: their runs (schedules) are listed like any other job.
        "job_types": [job_type.name for job_type in resources.registry],
        "tenants": await _tenant_names(session, viewer),
    }


@router.get("/jobs")
async def jobs_page(
    request: Request, viewer: ViewerDep, session: SessionDep, resources: ResourcesDep
) -> Response:
    context = await _jobs_context(request, viewer, session, resources)
    return render(request, "jobs.html", viewer, **context)


@router.get("/jobs/rows")
async def jobs_rows(
    request: Request, viewer: ViewerDep, session: SessionDep, resources: ResourcesDep
) -> Response:
    """The jobs table alone, which the jobs page polls for live updates."""
    context = await _jobs_context(request, viewer, session, resources)
    return render(request, "_jobs_rows.html", viewer, **context)


async def _job_or_404(
    request: Request, viewer: Viewer, session: AsyncSession, job_id: uuid.UUID
) -> Job | Response:
    job = await dashboard.find_job(session, tenant=viewer.tenant, job_id=job_id)
    if job is None:  # another tenant's job looks exactly like a missing one
        return render(request, "not_found.html", viewer, status_code=404)
    return job


async def _job_context(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    job: Job,
    tenants: dict[uuid.UUID, str],
) -> dict[str, Any]:
    status = JobStatus(job.status)
    # The job is one the viewer may see (`_job_or_404`): its attempts are read as its tenant's.
    history = await read_attempts(session, tenant_id=job.tenant_id, job_id=job.id)
    return {
        "job": job,
        "attempts": history.attempts,
        "is_terminal": status.is_terminal,
        "can_cancel": not status.is_terminal and viewer.can(Scope.CANCEL),
        "can_retry": status in UNSUCCESSFUL
        and job.retried_by is None
        and job.workflow_id is None  # a step is re-run by retrying its workflow
        and viewer.can(Scope.SUBMIT),
        "tenant_name": tenants.get(job.tenant_id, ""),
        "notice": notice_of(request.query_params),
    }


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request, job_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    job = await _job_or_404(request, viewer, session, job_id)
    if isinstance(job, Response):
        return job
    tenants = await _tenant_names(session, viewer)
    context = await _job_context(request, viewer, session, job, tenants)
    return render(request, "job.html", viewer, **context)


@router.get("/jobs/{job_id}/live")
async def job_live(
    request: Request, job_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """The changing part of a job's page, which the page polls until the job is finished."""
    job = await _job_or_404(request, viewer, session, job_id)
    if isinstance(job, Response):
        return job
    context = await _job_context(request, viewer, session, job, {})
    return render(request, "_job_live.html", viewer, **context)


@router.get("/dead-letters")
async def dead_letters(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    groups = await dashboard.dead_letter_groups(session, tenant=viewer.tenant)
    return render(
        request,
        "dead_letters.html",
        viewer,
        groups=groups,
        can_retry=viewer.can(Scope.SUBMIT),
        notice=notice_of(request.query_params),
    )
