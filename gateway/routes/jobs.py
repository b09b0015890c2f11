"""`GET /jobs/{id}` (with long-poll), `GET /jobs` (filters, cursor pages) and
`GET /jobs/{id}/attempts`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, StringConstraints

from gateway.auth import OwnedJob, ReadAuth
from gateway.deps import EventsDep, SessionDep, SettingsDep
from gateway.pagination import decode_cursor, encode_cursor
from gateway.problems import problems
from gateway.schemas import JobOut, JobPage
from gateway.waiting import wait_until_terminal
from shared.jobs import store
from shared.jobs.attempts import JobAttempts, read_attempts
from shared.jobs.view import job_view, job_views
from shared.status import JobStatus

AUTH_PROBLEMS = (401, 403)
MAX_FILTER_VALUES = 50
# Filters go to PostgreSQL as query parameters: keep out what it cannot hold (U+0000 in text)
# and bound how many there are, so bad input is a 422 and not a database error.
FilterText = Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\x00]*$")]


FilterTime = Annotated[datetime, AfterValidator(store.utc_filter_time)]


async def read_job(
    job: OwnedJob,
    session: SessionDep,
    events: EventsDep,
    settings: SettingsDep,
    wait: Annotated[
        float,
        Query(ge=0, le=60, description="Hold the request up to this many seconds for a result."),
    ] = 0,
) -> JobOut:
    """Read a job; with `wait`, answer as soon as it is terminal (long-poll)."""
    if wait > 0:
        job = await wait_until_terminal(
            session,
            events,
            job,
            wait_seconds=min(wait, settings.max_wait_seconds),
            recheck_seconds=settings.wait_recheck_seconds,
        )
    return await job_view(session, job)


def _parse_labels(labels: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for label in labels:
        key, sep, value = label.partition(":")
        if not sep or not key:
            raise RequestValidationError(
                [{"loc": ("query", "label"), "msg": "expected key:value", "type": "value_error"}]
            )
        parsed[key] = value
    return parsed


async def list_jobs(
    principal: ReadAuth,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[
        list[JobStatus] | None,
        Query(max_length=MAX_FILTER_VALUES, description="Repeat to match any."),
    ] = None,
    name: Annotated[
        list[FilterText] | None,
        Query(max_length=MAX_FILTER_VALUES, description="Job type; repeat to match any."),
    ] = None,
    label: Annotated[
        list[FilterText] | None,
        Query(max_length=MAX_FILTER_VALUES, description="`key:value`; repeat to match all."),
    ] = None,
    created_after: FilterTime | None = None,
    created_before: FilterTime | None = None,
    limit: Annotated[int | None, Query(ge=1, le=200)] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="From `next_cursor`.")] = None,
) -> JobPage:
    """The caller's jobs, newest first, a page at a time."""
    query = store.JobQuery(
        limit=limit or settings.list_default_limit,
        statuses=status or (),
        names=name or (),
        labels=_parse_labels(label or []),
        created_after=created_after,
        created_before=created_before,
        before_id=decode_cursor(cursor) if cursor else None,
    )
    jobs = await store.list_jobs(session, tenant_id=principal.tenant_id, query=query)
    page, more = jobs[: query.limit], len(jobs) > query.limit
    return JobPage(
        items=await job_views(session, tenant_id=principal.tenant_id, jobs=page),
        next_cursor=encode_cursor(page[-1].id) if more else None,
    )


async def list_attempts(job_id: uuid.UUID, principal: ReadAuth, session: SessionDep) -> JobAttempts:
    """The job's attempts, oldest first: who ran each, when, for how long, and how it ended."""
    return await read_attempts(session, tenant_id=principal.tenant_id, job_id=job_id)


def build_router() -> APIRouter:
    """The read routes of `/jobs`."""
    router = APIRouter()
    router.add_api_route(
        "/jobs",
        list_jobs,
        methods=["GET"],
        operation_id="list_jobs",
        summary="List your jobs, newest first",
        tags=["jobs"],
        responses=problems(*AUTH_PROBLEMS, 422),
    )
    router.add_api_route(
        "/jobs/{job_id}",
        read_job,
        methods=["GET"],
        operation_id="get_job",
        summary="Read a job; `wait` long-polls for its result",
        tags=["jobs"],
        responses=problems(*AUTH_PROBLEMS, 404, 422),
    )
    router.add_api_route(
        "/jobs/{job_id}/attempts",
        list_attempts,
        methods=["GET"],
        operation_id="list_job_attempts",
        summary="A job's attempts: worker, start, end, outcome and error of each",
        tags=["jobs"],
        responses=problems(*AUTH_PROBLEMS, 404, 422),
    )
    return router
