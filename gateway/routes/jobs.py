"""`/jobs`: submit (one typed operation per job type), read with long-poll, list."""

# No `from __future__ import annotations` here: submit routes are built at runtime from each
# job type's models, and FastAPI must see those classes, not strings naming locals.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, create_model

from gateway.auth import OwnedJob, ReadAuth, SubmitAuth
from gateway.deps import EventsDep, RedisDep, ResourcesDep, SessionDep, SettingsDep
from gateway.pagination import decode_cursor, encode_cursor
from gateway.problems import problems
from gateway.schemas import JobOut, JobPage
from gateway.waiting import wait_until_terminal
from shared import store
from shared.contracts import JobType, Registry
from shared.errors import UnknownJobType
from shared.status import JobStatus
from shared.submit import SubmitOptions, submit_jobs

AUTH_PROBLEMS = (401, 403)
SUBMIT_PROBLEMS = problems(*AUTH_PROBLEMS, 404, 413, 415, 422, 503)


def _submission_model(job_type: JobType[Any, Any]) -> type[BaseModel]:
    camel = "".join(part.capitalize() for part in job_type.name.split("_"))
    model: type[BaseModel] = create_model(
        f"{camel}Submission",
        __config__=ConfigDict(extra="forbid"),
        args=(job_type.args, Field(description=f"Arguments of `{job_type.name}`.")),
        options=(SubmitOptions, Field(default_factory=SubmitOptions)),
    )
    return model


def _add_submit_route(router: APIRouter, job_type: JobType[Any, Any]) -> None:
    submission = _submission_model(job_type)

    async def submit(
        body: submission,  # type: ignore[valid-type]
        principal: SubmitAuth,
        session: SessionDep,
        redis: RedisDep,
        resources: ResourcesDep,
        response: Response,
    ) -> JobOut:
        (job,) = await submit_jobs(
            session,
            redis,
            tenant_id=principal.tenant_id,
            job_type=job_type,
            requests=[(body.args, body.options)],  # type: ignore[attr-defined]
        )
        resources.jobs_submitted.labels(job_type.name).inc()
        response.headers["Location"] = f"/jobs/{job.id}"
        return JobOut.of(job)

    router.add_api_route(
        f"/jobs/{job_type.name}",
        submit,
        methods=["POST"],
        status_code=202,
        operation_id=f"submit_{job_type.name}",
        summary=f"Submit a `{job_type.name}` job",
        description=job_type.description,
        response_model=JobOut,
        responses=SUBMIT_PROBLEMS,
        tags=["jobs"],
    )


async def _unknown_job_type(name: str, principal: SubmitAuth) -> JobOut:
    raise UnknownJobType(f"No job type named {name!r} is registered; see GET /job-types.")


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
    return JobOut.of(job)


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
    status: Annotated[list[JobStatus] | None, Query(description="Repeat to match any.")] = None,
    name: Annotated[list[str] | None, Query(description="Job type; repeat to match any.")] = None,
    label: Annotated[
        list[str] | None, Query(description="`key:value`; repeat to match all.")
    ] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
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
        items=[JobOut.of(job) for job in page],
        next_cursor=encode_cursor(page[-1].id) if more else None,
    )


def build_router(registry: Registry) -> APIRouter:
    """The `/jobs` routes for the job types in `registry`."""
    router = APIRouter()
    router.add_api_route(
        "/jobs",
        list_jobs,
        methods=["GET"],
        operation_id="list_jobs",
        tags=["jobs"],
        responses=problems(*AUTH_PROBLEMS, 422),
    )
    for job_type in registry:
        _add_submit_route(router, job_type)
    # After the typed routes: any other name is an unknown type (404), not a 405 from /jobs/{id}.
    router.add_api_route(
        "/jobs/{name}", _unknown_job_type, methods=["POST"], include_in_schema=False
    )
    router.add_api_route(
        "/jobs/{job_id}",
        read_job,
        methods=["GET"],
        operation_id="get_job",
        tags=["jobs"],
        responses=problems(*AUTH_PROBLEMS, 404, 422),
    )
    return router
